using UblkCsi.Engine.Device;

namespace UblkCsi.UblkEngine.Tests.Device;

public class CompletionStackTests
{
    [Fact]
    public void ConcurrentProducersLoseAndDuplicateNothing()
    {
        const int Tags = 4096;
        const int Producers = 4;
        var stack = new CompletionStack(Tags);
        var seen = new int[Tags];
        var consumed = 0;
        var producers = Enumerable.Range(0, Producers).Select(p => new Thread(() =>
        {
            for (var tag = p; tag < Tags; tag += Producers)
            {
                stack.Push(tag);
            }
        })).ToList();
        producers.ForEach(t => t.Start());

        while (consumed < Tags)
        {
            var tag = stack.TakeAll();
            while (tag != CompletionStack.Empty)
            {
                var next = stack.Next(tag);
                seen[tag]++;
                consumed++;
                tag = next;
            }
        }

        producers.ForEach(t => t.Join());
        Assert.All(seen, count => Assert.Equal(1, count));
        Assert.True(stack.IsEmpty);
    }

    [Fact]
    public void ATagCanBePushedAgainAfterItWasTaken()
    {
        var stack = new CompletionStack(2);
        stack.Push(1);
        Assert.Equal(1, stack.TakeAll());
        Assert.Equal(CompletionStack.Empty, stack.TakeAll());
        stack.Push(1);
        stack.Push(0);
        var first = stack.TakeAll();
        Assert.Equal(0, first);
        Assert.Equal(1, stack.Next(first));
        Assert.Equal(CompletionStack.Empty, stack.Next(1));
    }
}
