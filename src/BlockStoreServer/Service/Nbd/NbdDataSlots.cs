namespace UblkCsi.BlockStoreServer.Service.Nbd;

/// <summary>
/// Orders a reconnect after the connection it replaces. A client that lost a connection (or gave up
/// on it after a timeout) sends the requests it had in flight again on a new one; the server may
/// still hold the old connection with some of those requests unread or running. If the old copy of
/// a write ran after the new copy was acknowledged and the client wrote the range again, the stale
/// copy would overwrite newer data. So each client connection names a slot (its index, appended to
/// the ticket as <c>#SLOT</c>), and a new connection of a slot first stops the one it replaces and
/// waits until that one has finished the request it was running: from then on only the new one runs.
/// </summary>
internal sealed class NbdDataSlots
{
    private readonly Dictionary<(string Ticket, int Slot), NbdDataConnection> _current = [];
    private readonly Lock _lock = new();

    /// <summary>
    /// Makes <paramref name="connection"/> its slot's current one, superseding the previous and waiting
    /// for it; false when that one was still running a request after <paramref name="timeout"/>.
    /// </summary>
    public bool TryTakeOver(NbdDataExport export, NbdDataConnection connection, TimeSpan timeout) =>
        TryTakeOver(export, connection, timeout, out _);

    /// <summary>As <see cref="TryTakeOver(NbdDataExport, NbdDataConnection, TimeSpan)"/>; <paramref name="replaced"/> says whether a previous connection was stopped.</summary>
    public bool TryTakeOver(NbdDataExport export, NbdDataConnection connection, TimeSpan timeout, out bool replaced)
    {
        replaced = false;
        if (export.Slot < 0)
        {
            return true;
        }

        NbdDataConnection? previous;
        lock (_lock)
        {
            _current.TryGetValue((export.Ticket, export.Slot), out previous);
            _current[(export.Ticket, export.Slot)] = connection;
        }

        if (previous is null)
        {
            return true;
        }

        replaced = true;
        previous.Supersede();
        return previous.WaitFinished(timeout);
    }

    /// <summary>Forgets <paramref name="connection"/> when it is still its slot's current one.</summary>
    public void Leave(NbdDataExport export, NbdDataConnection connection)
    {
        if (export.Slot < 0)
        {
            return;
        }

        lock (_lock)
        {
            if (_current.TryGetValue((export.Ticket, export.Slot), out var current) && current == connection)
            {
                _current.Remove((export.Ticket, export.Slot));
            }
        }
    }
}
