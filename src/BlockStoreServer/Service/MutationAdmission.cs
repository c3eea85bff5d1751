using Grpc.Core;
using Microsoft.Extensions.Logging;
using UblkCsi.Stores.Rpc;

namespace UblkCsi.BlockStoreServer.Service;

/// <summary>
/// Admits data-path mutations on an open volume, the same way for every channel (unary calls, Stream):
/// a writer whose lease was taken over is refused (<see cref="RpcErrorCodec.WriterSuperseded"/>); a
/// first attempt enters the volume's <see cref="MutationFence"/> at once; a retry first waits for every
/// mutation already running (the lost attempt may be one of them); a client that is already gone gets
/// nothing applied, so an attempt it will retry or report as failed cannot land later.
/// </summary>
internal static class MutationAdmission
{
    /// <summary>Enters a mutation; pass the result to <see cref="MutationFence.Exit"/> once it ran.</summary>
    /// <exception cref="RpcException">FAILED_PRECONDITION for a superseded writer; UNAVAILABLE when a retry's earlier attempt is still running.</exception>
    /// <exception cref="OperationCanceledException">The client went away first.</exception>
    public static ValueTask<int> EnterAsync(OpenVolume volume, ulong writerGeneration, uint attempt, TimeSpan retryDrainTimeout, ILogger logger, CancellationToken cancellationToken)
    {
        if (attempt != 0)
        {
            return EnterRetryAsync(volume, writerGeneration, attempt, retryDrainTimeout, logger, cancellationToken);
        }

        if (!volume.Fence.TryEnter(writerGeneration, out var epoch))
        {
            throw Superseded(volume, writerGeneration);
        }

        return new ValueTask<int>(EnteredUnlessCancelled(volume, epoch, cancellationToken));
    }

    /// <summary>Refuses a superseded writer's flush (a flush changes no data, so it needs no fence slot).</summary>
    public static void CheckWriter(OpenVolume volume, ulong writerGeneration)
    {
        if (!volume.Fence.Admits(writerGeneration))
        {
            throw Superseded(volume, writerGeneration);
        }
    }

    private static async ValueTask<int> EnterRetryAsync(OpenVolume volume, ulong writerGeneration, uint attempt, TimeSpan retryDrainTimeout, ILogger logger, CancellationToken cancellationToken)
    {
        var started = Environment.TickCount64;
        var (entered, epoch) = await volume.Fence.EnterAfterEarlierAsync(retryDrainTimeout, cancellationToken).ConfigureAwait(false);
        if (!entered)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, $"volume '{volume.VolumeId}': an earlier attempt of this call is still running; retry later"));
        }

        if (!volume.Fence.Admits(writerGeneration))
        {
            volume.Fence.Exit(epoch);
            throw Superseded(volume, writerGeneration);
        }

        BlockStoreService.RetryOrdered(logger, volume.VolumeId, attempt, Environment.TickCount64 - started);
        return EnteredUnlessCancelled(volume, epoch, cancellationToken);
    }

    private static int EnteredUnlessCancelled(OpenVolume volume, int epoch, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            volume.Fence.Exit(epoch);
            cancellationToken.ThrowIfCancellationRequested();
        }

        return epoch;
    }

    private static RpcException Superseded(OpenVolume volume, ulong writerGeneration) =>
        RpcErrorCodec.WriterSuperseded(volume.VolumeId, writerGeneration, volume.Fence.WriterGeneration);
}
