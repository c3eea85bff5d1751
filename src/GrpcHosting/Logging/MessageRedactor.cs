using System.Collections;
using System.Globalization;
using System.Text;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace UblkCsi.GrpcHosting.Logging;

/// <summary>
/// Renders a protobuf message as compact text for logs: sensitive fields (at any depth, in maps
/// and lists too) become <c>***</c>, bytes fields show only their length, long strings are cut,
/// and the whole rendering is bounded so a 1 MiB payload cannot flood the log.
/// </summary>
public sealed class MessageRedactor(SensitiveFieldPolicy policy)
{
    /// <summary>What a sensitive field's value is replaced with.</summary>
    public const string Redacted = "***";

    private const int MaxLength = 4096;
    private const int MaxStringLength = 256;
    private const int MaxDepth = 24;

    /// <summary>Renders <paramref name="message"/> with every sensitive field redacted.</summary>
    public string Render(IMessage? message)
    {
        if (message is null)
        {
            return "<none>";
        }

        var text = new StringBuilder();
        AppendMessage(text, message, 0);
        if (text.Length > MaxLength)
        {
            text.Length = MaxLength;
            text.Append("…(truncated)");
        }

        return text.ToString();
    }

    private void AppendMessage(StringBuilder text, IMessage message, int depth)
    {
        if (depth > MaxDepth)
        {
            text.Append("{…}");
            return;
        }

        text.Append('{');
        var first = true;
        foreach (var field in message.Descriptor.Fields.InFieldNumberOrder())
        {
            if (text.Length > MaxLength)
            {
                break;
            }

            if (!IsPresent(field, message, out var value))
            {
                continue;
            }

            text.Append(first ? "" : ", ").Append(field.Name).Append(": ");
            first = false;
            if (policy.IsSensitive(field))
            {
                text.Append(Redacted);
            }
            else if (field.IsMap)
            {
                AppendMap(text, field, (IDictionary)value!, depth);
            }
            else if (field.IsRepeated)
            {
                AppendList(text, field, (IList)value!, depth);
            }
            else
            {
                AppendValue(text, field, value, depth);
            }
        }

        text.Append('}');
    }

    private void AppendMap(StringBuilder text, FieldDescriptor field, IDictionary map, int depth)
    {
        var valueField = field.MessageType.FindFieldByNumber(2);
        text.Append('{');
        var first = true;
        foreach (DictionaryEntry entry in map)
        {
            text.Append(first ? "" : ", ");
            first = false;
            AppendScalar(text, entry.Key);
            text.Append(": ");
            AppendValue(text, valueField, entry.Value, depth);
            if (text.Length > MaxLength)
            {
                break;
            }
        }

        text.Append('}');
    }

    private void AppendList(StringBuilder text, FieldDescriptor field, IList list, int depth)
    {
        text.Append('[');
        for (var i = 0; i < list.Count && text.Length <= MaxLength; i++)
        {
            text.Append(i == 0 ? "" : ", ");
            AppendValue(text, field, list[i], depth);
        }

        text.Append(']');
    }

    private void AppendValue(StringBuilder text, FieldDescriptor field, object? value, int depth)
    {
        switch (value)
        {
            case null:
                text.Append("null");
                break;
            case IMessage nested:
                AppendMessage(text, nested, depth + 1);
                break;
            case ByteString bytes:
                text.Append('<').Append(bytes.Length.ToString(CultureInfo.InvariantCulture)).Append(" bytes>");
                break;
            case Enum when field.FieldType == FieldType.Enum:
                var number = Convert.ToInt32(value, CultureInfo.InvariantCulture);
                text.Append(field.EnumType.FindValueByNumber(number)?.Name ?? number.ToString(CultureInfo.InvariantCulture));
                break;
            default:
                AppendScalar(text, value);
                break;
        }
    }

    private static void AppendScalar(StringBuilder text, object? value)
    {
        switch (value)
        {
            case string s:
                AppendQuoted(text, s);
                break;
            case bool b:
                text.Append(b ? "true" : "false");
                break;
            case IFormattable formattable:
                text.Append(formattable.ToString(null, CultureInfo.InvariantCulture));
                break;
            default:
                text.Append(value);
                break;
        }
    }

    /// <summary>Quotes a string, escaping control characters so a value cannot forge log lines.</summary>
    private static void AppendQuoted(StringBuilder text, string value)
    {
        text.Append('"');
        var shown = value.AsSpan(0, Math.Min(value.Length, MaxStringLength));
        foreach (var c in shown)
        {
            if (c is '"' or '\\')
            {
                text.Append('\\').Append(c);
            }
            else if (char.IsControl(c))
            {
                text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            }
            else
            {
                text.Append(c);
            }
        }

        text.Append(value.Length > MaxStringLength ? "\"…" : "\"");
    }

    private static bool IsPresent(FieldDescriptor field, IMessage message, out object? value)
    {
        value = null;
        if (field.HasPresence && !field.Accessor.HasValue(message))
        {
            return false;
        }

        value = field.Accessor.GetValue(message);
        return value switch
        {
            null => false,
            IList list => list.Count > 0,
            IDictionary map => map.Count > 0,
            _ when field.HasPresence => true,
            string s => s.Length > 0,
            ByteString bytes => bytes.Length > 0,
            bool b => b,
            Enum e => Convert.ToInt32(e, CultureInfo.InvariantCulture) != 0,
            IConvertible number => Convert.ToDouble(number, CultureInfo.InvariantCulture) != 0,
            _ => true,
        };
    }
}
