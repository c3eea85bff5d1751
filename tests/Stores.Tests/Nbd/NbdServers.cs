using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using UblkCsi.GrpcEndpoints;

namespace UblkCsi.Stores.Tests.Nbd;

/// <summary>
/// Real NBD servers from Debian (nbdkit, qemu-nbd) on loopback, run as daemons (nbdkit without
/// --foreground, qemu-nbd --fork): children started straight from the test host were found to get
/// SIGTERM moments after starting; a daemon re-parented away from the test host is immune to that.
/// Ready when the pid file exists (both write it after binding), killed by that pid.
/// </summary>
public sealed class NbdServerProcess : IAsyncDisposable
{
    private readonly string _program;
    private readonly List<string> _args;
    private int _pid;

    private NbdServerProcess(string program, List<string> args, GrpcEndpoint endpoint, int pid)
    {
        _program = program;
        _args = args;
        Endpoint = endpoint;
        _pid = pid;
    }

    public GrpcEndpoint Endpoint { get; }

    public static string? Find(string program) =>
        new[] { "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin" }.Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);

    /// <summary>nbdkit with a plugin and its arguments (e.g. "memory", "size=64M"), on a free loopback TCP port.</summary>
    /// <remarks>
    /// A server that was given a port another test grabbed between <see cref="FreePort"/> and its bind,
    /// or that does not greet in time on a loaded machine, is replaced on a new port (up to three
    /// tries): the tests are about the client, not about winning that race.
    /// </remarks>
    public static async Task<NbdServerProcess> StartNbdkitAsync(params string[] pluginAndArgs)
    {
        for (var attempt = 1; ; attempt++)
        {
            var port = FreePort();
            List<string> args = ["-i", "127.0.0.1", "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture), .. pluginAndArgs];
            var server = await StartAsync(Find("nbdkit")!, args, GrpcEndpoint.Tcp("127.0.0.1", port));
            if (await GreetsAsync(port, TimeSpan.FromSeconds(10)) || attempt == 3)
            {
                return server;
            }

            server.Kill();
        }
    }

    /// <summary>True when an NBD server answers on the port with its greeting ("NBDMAGIC").</summary>
    private static async Task<bool> GreetsAsync(int port, TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            using var client = new System.Net.Sockets.TcpClient();
            await client.ConnectAsync(System.Net.IPAddress.Loopback, port, cancel.Token);
            var greeting = new byte[8];
            await client.GetStream().ReadExactlyAsync(greeting, cancel.Token);
            return System.Text.Encoding.ASCII.GetString(greeting) == "NBDMAGIC";
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or System.Net.Sockets.SocketException or EndOfStreamException)
        {
            return false;
        }
    }

    /// <summary>qemu-nbd serving an image file under an export name on a unix socket; <paramref name="options"/> go before the image (e.g. --object and --tls-creds).</summary>
    /// <remarks>
    /// Room for two volumes open at once with the client's default of 8 connections each, plus one:
    /// qemu-nbd does not accept a connection past its limit, which looks like a server that never negotiates.
    /// </remarks>
    public static Task<NbdServerProcess> StartQemuNbdAsync(string image, string format, string export, string socketPath, params string[] options)
    {
        List<string> args = ["--fork", "--persistent", "--shared=24", "-f", format, "-x", export, "-k", socketPath, "--cache=writeback", .. options, image];
        return StartAsync(Find("qemu-nbd")!, args, GrpcEndpoint.Unix(socketPath));
    }

    /// <summary>Creates an empty qcow2 image of <paramref name="size"/> (qemu-img syntax, e.g. "16M") for qemu-nbd.</summary>
    public static async Task CreateQcow2Async(string image, string size)
    {
        using var create = Process.Start(Find("qemu-img")!, ["create", "-q", "-f", "qcow2", image, size]);
        await create.WaitForExitAsync();
        if (create.ExitCode != 0)
        {
            throw new InvalidOperationException($"qemu-img create {image} {size} exited with {create.ExitCode}");
        }
    }

    /// <summary>Kills the server (SIGKILL: no goodbye to clients) and waits for it to be gone.</summary>
    public void Kill()
    {
        try
        {
            using var process = Process.GetProcessById(_pid);
            process.Kill();
            process.WaitForExit();
        }
        catch (ArgumentException)
        {
            // Already gone.
        }
    }

    /// <summary>Starts the same command again (same port or socket).</summary>
    public async Task RestartAsync()
    {
        _pid = await LaunchAsync(_program, _args, Endpoint);
    }

    public ValueTask DisposeAsync()
    {
        Kill();
        return default;
    }

    private static async Task<NbdServerProcess> StartAsync(string program, List<string> args, GrpcEndpoint endpoint) =>
        new(program, args, endpoint, await LaunchAsync(program, args, endpoint));

    private static async Task<int> LaunchAsync(string program, List<string> args, GrpcEndpoint endpoint)
    {
        var pidFile = Path.Combine(Path.GetTempPath(), $"nbd-test-{Guid.NewGuid():N}.pid");
        // setsid: a session of its own, so signals sent to the test host's process group (seen on
        // shared CI machines) do not reach the server while it starts.
        var info = new ProcessStartInfo("setsid") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        info.ArgumentList.Add("--wait");
        info.ArgumentList.Add(program);
        info.ArgumentList.Add(program.EndsWith("qemu-nbd", StringComparison.Ordinal) ? "--pid-file" : "--pidfile");
        info.ArgumentList.Add(pidFile);
        args.ForEach(info.ArgumentList.Add);
        var (exitCode, output) = await RunStarterAsync(info);
        if (exitCode == TerminatedBySigterm)
        {
            // Seen on loaded CI machines: a SIGTERM from outside the test reaches the server in the
            // moment before it detaches. One more start tells that apart from a server that fails.
            (exitCode, output) = await RunStarterAsync(info);
        }

        if (exitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', args)} exited with {exitCode}: {output}");
        }

        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(20))
        {
            if (File.Exists(pidFile) && File.ReadAllText(pidFile).Trim() is { Length: > 0 } text)
            {
                File.Delete(pidFile);
                return int.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
            }

            await Task.Delay(20);
        }

        throw new TimeoutException($"{program} did not listen on {endpoint} within 20 s: {output}");
    }

    private const int TerminatedBySigterm = 128 + 15;

    private static async Task<(int ExitCode, string Output)> RunStarterAsync(ProcessStartInfo info)
    {
        using var starter = Process.Start(info)!;
        var output = await starter.StandardError.ReadToEndAsync();
        await starter.WaitForExitAsync();
        return (starter.ExitCode, output);
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
/// <summary>A test that needs nbdkit: skipped, saying how to install it, when the machine has none.</summary>
public sealed class NbdkitFactAttribute : FactAttribute
{
    public NbdkitFactAttribute()
    {
        if (NbdServerProcess.Find("nbdkit") is null)
        {
            Skip = "nbdkit is not installed (scripts/setup.sh installs it; apt-get install nbdkit)";
        }
    }
}

/// <summary>A test that needs qemu-nbd and qemu-img: skipped, saying how to install them, when absent.</summary>
public sealed class QemuNbdFactAttribute : FactAttribute
{
    public QemuNbdFactAttribute()
    {
        if (NbdServerProcess.Find("qemu-nbd") is null || NbdServerProcess.Find("qemu-img") is null)
        {
            Skip = "qemu-nbd/qemu-img are not installed (scripts/setup.sh installs them; apt-get install qemu-utils)";
        }
    }
}
