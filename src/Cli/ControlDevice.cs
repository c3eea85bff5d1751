using UblkCsi.Engine;

namespace UblkCsi.Cli;

/// <summary>Opens /dev/ublk-control for a command; a missing driver or permission is one clear line, not a stack trace.</summary>
public static class ControlDevice
{
    public static UblkControl Open()
    {
        try
        {
            return UblkControl.Open();
        }
        catch (Exception e) when (e is UblkException or IOException)
        {
            throw new CliException(e.Message);
        }
    }
}
