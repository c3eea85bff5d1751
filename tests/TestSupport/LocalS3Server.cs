using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Amazon.Runtime;

namespace UblkCsi.TestSupport;

/// <summary>
/// Runs s3rver (an S3-compatible server in Node.js, installed by <c>npm ci</c> in tools/s3rver) on a
/// free loopback port with a private data directory, for tests and benchmarks. Disposing stops the
/// process and removes the directory.
/// </summary>
public sealed class LocalS3Server : IAsyncDisposable
{
    /// <summary>s3rver's built-in credentials.</summary>
    public const string AccessKeyId = "S3RVER";
    public const string SecretAccessKey = "S3RVER";

    /// <summary>Environment variable naming the directory holding s3rver's node_modules.</summary>
    public const string DirectoryVariable = "UBLK_CSI_S3RVER_DIR";

    private const string ScriptRelativePath = "node_modules/s3rver/bin/s3rver.js";

    private readonly Process _process;
    private readonly string _dataDirectory;

    private LocalS3Server(Process process, string dataDirectory, int port, string bucket)
    {
        _process = process;
        _dataDirectory = dataDirectory;
        Endpoint = $"http://127.0.0.1:{port}";
        Bucket = bucket;
    }

    /// <summary>Base URL, e.g. http://127.0.0.1:40123.</summary>
    public string Endpoint { get; }

    /// <summary>A bucket created at startup.</summary>
    public string Bucket { get; }

    public static AWSCredentials Credentials => new BasicAWSCredentials(AccessKeyId, SecretAccessKey);

    /// <summary>Starts the server and waits until it accepts connections.</summary>
    /// <exception cref="InvalidOperationException">s3rver is not installed (says how to install it) or does not start.</exception>
    public static async Task<LocalS3Server> StartAsync(string bucket = "ublk-csi-test", CancellationToken cancellationToken = default)
    {
        var script = FindScript();
        var dataDirectory = Directory.CreateTempSubdirectory("ublk-csi-s3rver-").FullName;
        for (var attempt = 0; ; attempt++)
        {
            var port = FreeLoopbackPort();
            var start = new ProcessStartInfo("node")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = true,
                UseShellExecute = false,
            };
            foreach (var arg in new[] { script, "-d", dataDirectory, "-a", "127.0.0.1", "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--silent", "--configure-bucket", bucket })
            {
                start.ArgumentList.Add(arg);
            }

            Process process;
            try
            {
                process = Process.Start(start) ?? throw new InvalidOperationException("node did not start");
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                Directory.Delete(dataDirectory, recursive: true);
                throw new InvalidOperationException("s3rver needs Node.js ('node' on PATH): " + e.Message, e);
            }

            var stderr = new System.Text.StringBuilder();
            process.ErrorDataReceived += (_, e) =>
            {
                lock (stderr)
                {
                    stderr.AppendLine(e.Data);
                }
            };
            process.BeginErrorReadLine();
            process.OutputDataReceived += (_, _) => { };
            process.BeginOutputReadLine();

            var server = new LocalS3Server(process, dataDirectory, port, bucket);
            if (await server.WaitUntilListeningAsync(port, cancellationToken).ConfigureAwait(false))
            {
                return server;
            }

            await server.StopProcessAsync().ConfigureAwait(false);
            if (attempt == 2)
            {
                Directory.Delete(dataDirectory, recursive: true);
                string output;
                lock (stderr)
                {
                    output = stderr.ToString().Trim();
                }

                throw new InvalidOperationException($"s3rver did not start on 127.0.0.1:{port}: {output}");
            }
        }
    }

    /// <summary>Parameters for an s3 store on this server (prefix isolates stores sharing the bucket).</summary>
    public Dictionary<string, string> StoreParameters(string prefix, string cacheDirectory) => new()
    {
        ["bucket"] = Bucket,
        ["prefix"] = prefix,
        ["endpoint"] = Endpoint,
        ["pathStyle"] = "true",
        ["cacheDir"] = cacheDirectory,
    };

    /// <summary>Secrets for an s3 store on this server.</summary>
    public static Dictionary<string, string> StoreSecrets() => new()
    {
        ["accessKeyId"] = AccessKeyId,
        ["secretAccessKey"] = SecretAccessKey,
    };

    public async ValueTask DisposeAsync()
    {
        await StopProcessAsync().ConfigureAwait(false);
        try
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private async Task StopProcessAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().ConfigureAwait(false);
        }

        _process.Dispose();
    }

    private async Task<bool> WaitUntilListeningAsync(int port, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (DateTime.UtcNow < deadline && !_process.HasExited)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port, cancellationToken).ConfigureAwait(false);
                return true;
            }
            catch (SocketException)
            {
                await Task.Delay(50, cancellationToken).ConfigureAwait(false);
            }
        }

        return false;
    }

    private static int FreeLoopbackPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string FindScript()
    {
        if (Environment.GetEnvironmentVariable(DirectoryVariable) is { Length: > 0 } configured)
        {
            var path = Path.Combine(configured, ScriptRelativePath);
            return File.Exists(path)
                ? path
                : throw new InvalidOperationException($"{DirectoryVariable}={configured} has no {ScriptRelativePath}; run 'npm ci' there");
        }

        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var tools = Path.Combine(dir.FullName, "tools", "s3rver");
                var script = Path.Combine(tools, ScriptRelativePath);
                if (File.Exists(script))
                {
                    return script;
                }

                if (File.Exists(Path.Combine(tools, "package.json")))
                {
                    throw new InvalidOperationException($"s3rver is not installed: run 'npm ci' in {tools}");
                }
            }
        }

        throw new InvalidOperationException($"s3rver not found: run 'npm ci' in the repository's tools/s3rver, or set {DirectoryVariable} to a directory where s3rver is installed");
    }
}
