using System.Runtime.InteropServices;

namespace UblkCsi.Hosting;

/// <summary>
/// Turns SIGTERM and SIGINT into a cancellation token, so the host can finish in-flight calls
/// and remove its socket instead of dying mid-call (kubelet sends SIGTERM on pod deletion).
/// </summary>
public sealed class ShutdownSignals : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly PosixSignalRegistration[] _registrations;

    /// <summary>Starts listening for SIGTERM and SIGINT.</summary>
    public ShutdownSignals()
    {
        _registrations =
        [
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal),
            PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal),
        ];
    }

    /// <summary>Cancelled on the first signal.</summary>
    public CancellationToken Token => _stop.Token;

    /// <summary>Stops listening; later signals get the default behaviour.</summary>
    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }

        _stop.Dispose();
    }

    private void OnSignal(PosixSignalContext context)
    {
        // Keep the process alive; the host exits on its own once it has stopped cleanly.
        context.Cancel = true;
        _stop.Cancel();
    }
}
