namespace UblkCsi.Stores;

/// <summary>
/// A volume whose data path can become unhealthy while it stays open (a network store that lost its
/// server). The node plugin reports <see cref="Condition"/> as the CSI VolumeCondition. Reading it
/// is cheap and never blocks.
/// </summary>
public interface IVolumeConditionSource
{
    StoreVolumeCondition Condition { get; }
}

/// <summary>CSI VolumeCondition: abnormal or not, and a message for humans saying why.</summary>
public readonly record struct StoreVolumeCondition(bool Abnormal, string Message);
