using Grpc.Core;
using UblkCsi.TestSupport;
using Csi.V1;
using Google.Protobuf;
using Ublkcsi.Testing.V1;
using UblkCsi.GrpcHosting.Logging;

namespace UblkCsi.GrpcHosting.Tests;

/// <summary>Secrets must never reach any log line at any level, however deeply they are nested.</summary>
public sealed class RedactionTests
{
    private static EchoRequest RequestFullOfSecrets() => new()
    {
        Text = "visible-text",
        Payload = ByteString.CopyFrom(new byte[300]),
        Credentials = new Credentials { User = "visible-user", Password = "SECRET-top-password", Tokens = { ["t"] = "SECRET-top-token" } },
        Labels = { ["zone"] = "visible-zone" },
        Vault = { ["db"] = new Credentials { User = "visible-db-user", Password = "SECRET-map-password", Tokens = { ["k"] = "SECRET-map-token" } } },
        History = { new Credentials { User = "visible-old-user", Password = "SECRET-list-password" } },
    };

    [Fact]
    public async Task SecretsNeverAppearInLogsOfSuccessfulOrFailedCalls()
    {
        await using var server = await TestServer.StartAsync();
        var request = RequestFullOfSecrets();

        await server.EchoAsync(request);
        var failing = request.Clone();
        failing.FailWith = "rpc";
        await Assert.ThrowsAsync<RpcException>(() => server.Channel.CallAsync<EchoRequest, EchoResponse>(
            EchoService.Descriptor.FindMethodByName("Fail"), failing));
        var crashing = request.Clone();
        crashing.Text = "crash";
        await Assert.ThrowsAsync<RpcException>(() => server.Channel.CallAsync<EchoRequest, EchoResponse>(
            EchoService.Descriptor.FindMethodByName("Fail"), crashing));

        var logs = server.Logs.AllText;
        Assert.DoesNotContain("SECRET", logs);
        Assert.Contains("visible-user", logs);
        Assert.Contains("visible-db-user", logs);
        Assert.Contains("visible-old-user", logs);
        Assert.Contains("visible-zone", logs);
        Assert.Contains("password: ***", logs);
        Assert.Contains("tokens: ***", logs);
        Assert.Contains("<300 bytes>", logs);
        Assert.Contains(server.Logs.Entries, e => e.Level == Microsoft.Extensions.Logging.LogLevel.Debug && e.Message.Contains("/ublkcsi.testing.v1.Echo/Echo OK", StringComparison.Ordinal));
    }

    [Fact]
    public async Task CsiSecretFieldsAreRedactedInServedCsiRequests()
    {
        await using var server = await TestServer.StartAsync();
        var stage = new NodeStageVolumeRequest
        {
            VolumeId = "vol-visible",
            StagingTargetPath = "/var/lib/kubelet/staging",
            Secrets = { ["accessKey"] = "SECRET-AKIA", ["secretKey"] = "SECRET-sk" },
            VolumeContext = { ["store"] = "s3" },
        };

        var rendered = new MessageRedactor(new SensitiveFieldPolicy(CsiExtensions.CsiSecret)).Render(stage);

        Assert.DoesNotContain("SECRET", rendered);
        Assert.Contains("secrets: ***", rendered);
        Assert.Contains("vol-visible", rendered);
        Assert.Contains("\"store\": \"s3\"", rendered);
    }

    [Fact]
    public void EveryCsiSecretsFieldIsRecognisedAsSensitive()
    {
        var policy = new SensitiveFieldPolicy(CsiExtensions.CsiSecret);
        var secretFields = CsiReflection.Descriptor.MessageTypes
            .SelectMany(m => m.Fields.InDeclarationOrder())
            .Where(f => f.Name == "secrets")
            .ToList();

        Assert.True(secretFields.Count >= 15, $"found {secretFields.Count} secrets fields");
        Assert.All(secretFields, f => Assert.True(policy.IsSensitive(f), f.FullName));
        Assert.False(policy.IsSensitive(CreateVolumeRequest.Descriptor.FindFieldByName("parameters")));
    }

    [Fact]
    public void RenderingIsBoundedForHugeMessages()
    {
        var huge = new EchoRequest { Text = new string('a', 100_000), Labels = { Enumerable.Range(0, 5000).ToDictionary(i => "k" + i, i => "v" + i) } };

        var rendered = new MessageRedactor(SensitiveFieldPolicy.None).Render(huge);

        Assert.True(rendered.Length < 5000, $"rendered {rendered.Length} chars");
    }

    [Fact]
    public void ControlCharactersCannotForgeLogLines()
    {
        var rendered = new MessageRedactor(SensitiveFieldPolicy.None).Render(new EchoRequest { Text = "a\nFAKE LINE\r\"q\"" });

        Assert.DoesNotContain("\n", rendered);
        Assert.Contains("\\u000a", rendered);
        Assert.Contains("\\\"q\\\"", rendered);
    }
}
