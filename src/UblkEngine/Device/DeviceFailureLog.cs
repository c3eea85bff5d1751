using Microsoft.Extensions.Logging;
using UblkCsi.Engine.Abi;
using UblkCsi.Engine.Interop;
using UblkCsi.Engine.Logging;

namespace UblkCsi.Engine.Device;

/// <summary>
/// Logs the backend failures of one device so they are seen without flooding: the first failure of
/// each kind (operation and errno) at once, with the errno and the store's reason; later ones of
/// that kind at most once per <see cref="RepeatInterval"/>, with how many were not logged meanwhile.
/// Shared by the device's queue threads. Only failures reach it, so its lock and the dictionary
/// entry made on a kind's first failure cost nothing on the success path.
/// </summary>
internal sealed class DeviceFailureLog(int deviceId, ILogger logger, TimeProvider? time = null)
{
    public static readonly TimeSpan RepeatInterval = TimeSpan.FromMinutes(1);

    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly Lock _gate = new();
    private readonly Dictionary<int, KindState> _kinds = [];

    public void Report(UblkIoOp op, int errno, string reason)
    {
        var key = ((int)op << 16) | (errno & 0xFFFF);
        var now = _time.GetTimestamp();
        long suppressed;
        bool first;
        lock (_gate)
        {
            if (!_kinds.TryGetValue(key, out var state))
            {
                _kinds[key] = new KindState { LastLogged = now };
                first = true;
                suppressed = 0;
            }
            else
            {
                if (_time.GetElapsedTime(state.LastLogged, now) < RepeatInterval)
                {
                    state.Suppressed++;
                    return;
                }

                first = false;
                suppressed = state.Suppressed;
                state.Suppressed = 0;
                state.LastLogged = now;
            }
        }

        var name = OpName(op);
        if (first)
        {
            EngineLog.FirstBackendFailure(logger, deviceId, name, errno, Errno.Describe(errno), reason);
        }
        else
        {
            EngineLog.RepeatedBackendFailure(logger, deviceId, name, errno, Errno.Describe(errno), suppressed, reason);
        }
    }

    private static string OpName(UblkIoOp op) => op switch
    {
        UblkIoOp.Read => "READ",
        UblkIoOp.Write => "WRITE",
        UblkIoOp.Flush => "FLUSH",
        UblkIoOp.Discard => "DISCARD",
        UblkIoOp.WriteZeroes => "WRITE_ZEROES",
        _ => op.ToString(),
    };

    private sealed class KindState
    {
        public long LastLogged;
        public long Suppressed;
    }
}
