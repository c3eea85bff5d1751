using Microsoft.Extensions.Logging;
using UblkCsi.Controller.Provisioning;
using UblkCsi.TestSupport;

namespace UblkCsi.Controller.Tests.Service;

/// <summary>A controller service with its own catalog (a fresh controller process) and captured logs.</summary>
public sealed class ControllerHarness : IAsyncDisposable
{
    private readonly ILoggerFactory _loggerFactory;
    private readonly bool _sharedCatalog;

    public ControllerHarness(ControllerServiceOptions options, Dictionary<string, string> parameters, Dictionary<string, string> secrets, StoreCatalog? catalog = null)
    {
        _loggerFactory = CapturingLoggerProvider.CreateFactory(out var logs);
        Logs = logs;
        _sharedCatalog = catalog is not null;
        Catalog = catalog ?? new StoreCatalog();
        Service = new ControllerService(options, Catalog, _loggerFactory.CreateLogger<ControllerService>());
        Parameters = parameters;
        Secrets = secrets;
    }

    public ControllerService Service { get; }

    public StoreCatalog Catalog { get; }

    public CapturingLoggerProvider Logs { get; }

    /// <summary>StorageClass parameters of this test's store location, <c>store</c> included.</summary>
    public Dictionary<string, string> Parameters { get; }

    /// <summary>Provisioner secrets for it.</summary>
    public Dictionary<string, string> Secrets { get; }

    /// <summary>A second controller on the same stores: what a restarted or failed-over controller sees.</summary>
    /// <param name="storeSurvives">False for the memory store, which lives in the catalog: the catalog is then shared.</param>
    public ControllerHarness Restarted(ControllerServiceOptions options, bool storeSurvives) =>
        new(options, Parameters, Secrets, storeSurvives ? null : Catalog);

    public async ValueTask DisposeAsync()
    {
        if (!_sharedCatalog)
        {
            await Catalog.DisposeAsync();
        }

        _loggerFactory.Dispose();
    }
}
