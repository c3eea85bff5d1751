using UblkCsi.Stores;

namespace UblkCsi.Cli;

/// <summary>
/// <c>ublk-csi create-volume</c> (and <c>expand-volume</c>): creates (or finds, idempotently) a volume in a store from the same
/// StorageClass parameters the CSI driver uses, and prints its ID: how an operator pre-provisions a
/// volume for a static PV (volumeHandle <c>LOCATOR/ID</c>, volumeAttributes <c>store</c> + the
/// parameters). Secrets come from the environment as STORE_SECRET_&lt;KEY&gt;, never from arguments.
/// </summary>
internal static class CreateVolumeCommand
{
    public const string Summary = "create a volume in a store from StorageClass parameters (static provisioning)";

    public const string ExpandSummary = "grow a store volume to SIZE (what ControllerExpandVolume does)";

    private const string Usage = "usage: ublk-csi create-volume|expand-volume --store file|s3|rpc --param KEY=VALUE... --name NAME --size SIZE\n"
        + "  secrets (s3 accessKeyId/secretAccessKey, rpc token) from STORE_SECRET_<KEY> environment variables";

    private const string SecretPrefix = "STORE_SECRET_";

    public static Task<int> RunAsync(string[] args) => RunAsync(args, expand: false);

    public static Task<int> RunExpandAsync(string[] args) => RunAsync(args, expand: true);

    private static async Task<int> RunAsync(string[] args, bool expand)
    {
        string? type = null, name = null;
        long? size = null;
        var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--store": type = CommandOptions.Value(args, ref i); break;
                case "--name": name = CommandOptions.Value(args, ref i); break;
                case "--size": size = CommandOptions.ParseSize("--size", CommandOptions.Value(args, ref i)); break;
                case "--param":
                    var pair = CommandOptions.Value(args, ref i);
                    var eq = pair.IndexOf('=');
                    if (eq <= 0)
                    {
                        throw new CliException($"--param '{pair}' is not KEY=VALUE", 2);
                    }

                    parameters[pair[..eq]] = pair[(eq + 1)..];
                    break;
                case "-h" or "--help": Console.Out.WriteLine(Usage); return 0;
                default: throw new CliException($"unknown argument '{args[i]}'\n{Usage}", 2);
            }
        }

        if (type is null || name is null || size is null)
        {
            throw new CliException($"--store, --name and --size are required\n{Usage}", 2);
        }

        var secrets = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (System.Collections.DictionaryEntry variable in Environment.GetEnvironmentVariables())
        {
            if (variable.Key is string key && key.StartsWith(SecretPrefix, StringComparison.Ordinal) && variable.Value is string value)
            {
                secrets[key[SecretPrefix.Length..]] = value;
            }
        }

        try
        {
            await using var store = StoreRegistry.Open(type, parameters, secrets);
            if (expand)
            {
                Console.Out.WriteLine(await store.ExpandVolumeAsync(VolumeIds.FromName(name), size.Value));
            }
            else
            {
                Console.Out.WriteLine((await store.CreateVolumeAsync(new CreateVolumeRequest(name, size.Value))).Id);
            }

            return 0;
        }
        catch (StoreException e)
        {
            throw new CliException(e.Message);
        }
    }
}
