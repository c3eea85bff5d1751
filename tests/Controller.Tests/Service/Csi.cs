using Csi.V1;
using Grpc.Core;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace UblkCsi.Controller.Tests.Service;

/// <summary>Request builders and assertions shared by the controller tests.</summary>
public static class Csi
{
    public const long GiB = 1L << 30;

    public static VolumeCapability Mount(Mode mode = Mode.SingleNodeWriter, string fsType = "ext4") => new()
    {
        Mount = new VolumeCapability.Types.MountVolume { FsType = fsType },
        AccessMode = new VolumeCapability.Types.AccessMode { Mode = mode },
    };

    public static VolumeCapability Block(Mode mode = Mode.SingleNodeWriter) => new()
    {
        Block = new VolumeCapability.Types.BlockVolume(),
        AccessMode = new VolumeCapability.Types.AccessMode { Mode = mode },
    };

    public static CreateVolumeRequest Create(string name, IDictionary<string, string> parameters, IDictionary<string, string> secrets, long required = GiB, long limit = 0)
    {
        var request = new CreateVolumeRequest
        {
            Name = name,
            VolumeCapabilities = { Mount() },
            Parameters = { parameters },
            Secrets = { secrets },
        };
        if (required != 0 || limit != 0)
        {
            request.CapacityRange = new CapacityRange { RequiredBytes = required, LimitBytes = limit };
        }

        return request;
    }

    /// <summary>Runs a call that must fail with <paramref name="code"/>; returns the exception for message checks.</summary>
    public static async Task<RpcException> Fails(StatusCode code, Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(code == e.StatusCode, $"expected {code}, got {e.StatusCode}: {e.Status.Detail}");
        return e;
    }
}
