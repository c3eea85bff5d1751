using System.Reflection;
using Microsoft.Extensions.Logging;
using UblkCsi.Engine;
using UblkCsi.Engine.Logging;

namespace UblkCsi.Stores.Tests.Contract;

/// <summary>
/// Every [LoggerMessage] of the assemblies a node plugin or block-store server loads: ids unique per
/// logging class, and the engine's and stores' ids taken from <see cref="LogEventIds"/> and unique
/// across all of them, so an id names one event in the process.
/// </summary>
public sealed class LogEventIdTests
{
    private static readonly Assembly[] Product =
    [
        typeof(UblkDevice).Assembly,
        typeof(StoreRegistry).Assembly,
        typeof(GrpcHosting.GrpcServer).Assembly,
        typeof(BlockStoreServer.BlockStoreServerHost).Assembly,
    ];

    [Fact]
    public void EngineAndStoreEventIdsComeFromTheCentralClassAndCollideWithNothing()
    {
        var all = Events().ToList();
        var central = typeof(LogEventIds).GetFields().Select(f => (int)f.GetRawConstantValue()!).ToHashSet();
        Assert.Equal(typeof(LogEventIds).GetFields().Length, central.Count); // no two names share a value
        var ours = all.Where(e => e.Assembly == typeof(UblkDevice).Assembly || e.Assembly == typeof(StoreRegistry).Assembly).ToList();
        Assert.NotEmpty(ours);
        Assert.All(ours, e => Assert.Contains(e.Id, central));
        foreach (var e in ours)
        {
            var sharing = all.Where(o => o.Id == e.Id && o.Method != e.Method).Select(o => $"{o.Method.DeclaringType}.{o.Method.Name}").ToList();
            Assert.True(sharing.Count == 0, $"event id {e.Id} of {e.Method.DeclaringType}.{e.Method.Name} is also used by {string.Join(", ", sharing)}");
        }
    }

    [Fact]
    public void NoLoggingClassUsesAnIdTwice()
    {
        var duplicates = Events()
            .GroupBy(e => (e.Method.DeclaringType, e.Id))
            .Where(g => g.Count() > 1)
            .Select(g => $"{g.Key.DeclaringType}: {g.Key.Id}")
            .ToList();
        Assert.Empty(duplicates);
    }

    private static IEnumerable<(Assembly Assembly, MethodInfo Method, int Id)> Events() =>
        from assembly in Product
        from type in assembly.GetTypes()
        from method in type.GetMethods(BindingFlags.Static | BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly)
        let attribute = method.GetCustomAttribute<LoggerMessageAttribute>()
        where attribute != null
        select (assembly, method, attribute.EventId);
}
