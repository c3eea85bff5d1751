using System.Reflection;

namespace UblkCsi.TestSupport;

/// <summary>
/// The rpcs a service class implements: the methods it overrides from its generated base. Every rpc
/// it does not override answers UNIMPLEMENTED, so tests name the overridden set to make that choice
/// conscious (a method added to the proto, or a typo in an override, shows up here).
/// </summary>
public static class ServiceOverrides
{
    public static IReadOnlyList<string> Of(Type service) =>
        service.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly)
            .Where(m => m.GetBaseDefinition().DeclaringType != m.DeclaringType && m.GetBaseDefinition().DeclaringType!.IsNested)
            .Select(m => m.Name)
            .Order(StringComparer.Ordinal)
            .ToList();
}
