namespace UblkCsi.Hosting;

/// <summary>A command-line option with the environment variable Kubernetes manifests set for it.</summary>
/// <param name="Name">The long option, e.g. <c>--endpoint</c>.</param>
/// <param name="EnvironmentVariable">The environment variable read when the option is absent, e.g. <c>CSI_ENDPOINT</c>.</param>
/// <param name="Description">One line for --help.</param>
/// <param name="IsFlag">True for options without a value (e.g. --help).</param>
public sealed record HostOption(string Name, string? EnvironmentVariable, string Description, bool IsFlag = false);

/// <summary>An invalid option: printed as one line naming the option, and the process exits with code 2.</summary>
public sealed class HostOptionException(string option, string message) : Exception($"{option}: {message}")
{
    /// <summary>The option at fault, e.g. <c>--log-level</c>.</summary>
    public string Option { get; } = option;
}
