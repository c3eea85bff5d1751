using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using UblkCsi.Hosting;
using UblkCsi.Stores.Nbd;

namespace UblkCsi.Cli;

/// <summary>
/// Store events while the tool serves a device (nbd: connection lost, restored, given up) as log
/// lines on stderr: stdout carries only the device path, which scripts read.
/// </summary>
internal sealed class StoreEventLog : IAsyncDisposable
{
    private readonly ILoggerFactory _factory = HostLogging.Create(
        LogLevel.Information,
        LogFormat.Text,
        builder => builder.Services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace));

    private readonly IAsyncDisposable _nbd;

    public StoreEventLog() => _nbd = NbdStoreProvider.UseLoggerFactory(_factory);

    public async ValueTask DisposeAsync()
    {
        await _nbd.DisposeAsync().ConfigureAwait(false);
        _factory.Dispose();
    }
}
