namespace UblkCsi.Stores;

/// <summary>The health of an open volume, in the shape of CSI's VolumeCondition.</summary>
/// <param name="Abnormal">True while something is wrong.</param>
/// <param name="Message">What is wrong (no secrets), or "ok".</param>
public sealed record VolumeCondition(bool Abnormal, string Message)
{
    public static readonly VolumeCondition Healthy = new(false, "ok");
}
