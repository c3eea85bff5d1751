using UblkCsi.TestSupport;

namespace UblkCsi.Controller.Tests.Service;

public sealed class ControllerServiceShapeTests
{
    /// <summary>Every csi.v1.Controller rpc but ControllerModifyVolume (the QoS issue) and GetSnapshot (not advertised).</summary>
    [Fact]
    public void ServesEveryControllerRpcExceptGetSnapshot() =>
        Assert.Equal(
            [
                "ControllerExpandVolume", "ControllerGetCapabilities", "ControllerGetVolume", "ControllerModifyVolume", "ControllerPublishVolume",
                "ControllerUnpublishVolume", "CreateSnapshot", "CreateVolume", "DeleteSnapshot", "DeleteVolume", "GetCapacity",
                "ListSnapshots", "ListVolumes", "ValidateVolumeCapabilities",
            ],
            ServiceOverrides.Of(typeof(ControllerService)));
}
