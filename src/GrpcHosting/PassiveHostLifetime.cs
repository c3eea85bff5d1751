using Microsoft.Extensions.Hosting;

namespace UblkCsi.GrpcHosting;

/// <summary>
/// Keeps the embedded web host from installing its own SIGTERM/Ctrl+C handling: the process that
/// owns the <see cref="GrpcServer"/> decides when to stop it.
/// </summary>
internal sealed class PassiveHostLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
