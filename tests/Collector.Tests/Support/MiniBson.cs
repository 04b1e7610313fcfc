using System.Buffers.Binary;
using System.Text;

namespace Collector.Tests.Support;

/// <summary>BSON (bsonspec.org) written and read by hand for the scripted MongoDB server, so that
/// the server does not share the driver's own BSON code: what the driver decodes was encoded by
/// something else, as with a real mongod.</summary>
public sealed class BsonWriter
{
    private readonly List<(byte Type, string Name, byte[] Value)> _elements = [];

    public BsonWriter Double(string name, double v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteDoubleLittleEndian(b, v);
        return Add(0x01, name, b);
    }

    public BsonWriter String(string name, string v)
    {
        var s = Encoding.UTF8.GetBytes(v);
        var b = new byte[4 + s.Length + 1];
        BinaryPrimitives.WriteInt32LittleEndian(b, s.Length + 1);
        s.CopyTo(b, 4);
        return Add(0x02, name, b);
    }

    public BsonWriter Document(string name, BsonWriter doc) => Add(0x03, name, doc.ToBytes());

    public BsonWriter Array(string name, params BsonWriter[] docs)
    {
        var a = new BsonWriter();
        for (var i = 0; i < docs.Length; i++) a.Document(i.ToString(System.Globalization.CultureInfo.InvariantCulture), docs[i]);
        return Add(0x04, name, a.ToBytes());
    }

    public BsonWriter StringArray(string name, params string[] values)
    {
        var a = new BsonWriter();
        for (var i = 0; i < values.Length; i++) a.String(i.ToString(System.Globalization.CultureInfo.InvariantCulture), values[i]);
        return Add(0x04, name, a.ToBytes());
    }

    public BsonWriter Bool(string name, bool v) => Add(0x08, name, [v ? (byte)1 : (byte)0]);

    public BsonWriter DateTime(string name, DateTimeOffset v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(b, v.ToUnixTimeMilliseconds());
        return Add(0x09, name, b);
    }

    public BsonWriter Null(string name) => Add(0x0A, name, []);

    public BsonWriter Int32(string name, int v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(b, v);
        return Add(0x10, name, b);
    }

    public BsonWriter Int64(string name, long v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(b, v);
        return Add(0x12, name, b);
    }

    /// <summary>An element of any type byte with these raw value bytes (for malformed documents).</summary>
    public BsonWriter Raw(byte type, string name, byte[] value) => Add(type, name, value);

    private BsonWriter Add(byte type, string name, byte[] value)
    {
        _elements.Add((type, name, value));
        return this;
    }

    public byte[] ToBytes()
    {
        using var ms = new MemoryStream();
        ms.Write(new byte[4]);
        foreach (var (type, name, value) in _elements)
        {
            ms.WriteByte(type);
            ms.Write(Encoding.UTF8.GetBytes(name));
            ms.WriteByte(0);
            ms.Write(value);
        }
        ms.WriteByte(0);
        var bytes = ms.ToArray();
        BinaryPrimitives.WriteInt32LittleEndian(bytes, bytes.Length);
        return bytes;
    }
}

/// <summary>A BSON document read into names and values: string, double, int, long, bool, null,
/// DateTimeOffset, nested <see cref="BsonRead"/> (documents and arrays), byte[] (binary, ObjectId,
/// decimal, timestamp as raw bytes).</summary>
public sealed class BsonRead
{
    public List<(string Name, object? Value)> Elements { get; } = [];

    public object? this[string name] => Elements.FirstOrDefault(e => e.Name == name).Value;

    public string FirstName => Elements.Count > 0 ? Elements[0].Name : "";

    /// <summary>Reads one document at offset; returns it and its length.</summary>
    public static (BsonRead Doc, int Length) Parse(ReadOnlySpan<byte> data)
    {
        var length = BinaryPrimitives.ReadInt32LittleEndian(data);
        if (length < 5 || length > data.Length) throw new FormatException($"document length {length} outside 5..{data.Length}");
        var doc = new BsonRead();
        var i = 4;
        while (data[i] != 0)
        {
            var type = data[i++];
            var name = CString(data, ref i);
            object? value;
            switch (type)
            {
                case 0x01: value = BinaryPrimitives.ReadDoubleLittleEndian(data[i..]); i += 8; break;
                case 0x02:
                {
                    var n = BinaryPrimitives.ReadInt32LittleEndian(data[i..]);
                    value = Encoding.UTF8.GetString(data.Slice(i + 4, n - 1));
                    i += 4 + n;
                    break;
                }
                case 0x03:
                case 0x04:
                {
                    var (sub, n) = Parse(data[i..]);
                    value = sub;
                    i += n;
                    break;
                }
                case 0x05:
                {
                    var n = BinaryPrimitives.ReadInt32LittleEndian(data[i..]);
                    value = data.Slice(i + 5, n).ToArray();
                    i += 5 + n;
                    break;
                }
                case 0x07: value = data.Slice(i, 12).ToArray(); i += 12; break;
                case 0x08: value = data[i] != 0; i += 1; break;
                case 0x09: value = DateTimeOffset.FromUnixTimeMilliseconds(BinaryPrimitives.ReadInt64LittleEndian(data[i..])); i += 8; break;
                case 0x0A: value = null; break;
                case 0x0B: value = CString(data, ref i) + "/" + CString(data, ref i); break;
                case 0x10: value = BinaryPrimitives.ReadInt32LittleEndian(data[i..]); i += 4; break;
                case 0x11: value = data.Slice(i, 8).ToArray(); i += 8; break;
                case 0x12: value = BinaryPrimitives.ReadInt64LittleEndian(data[i..]); i += 8; break;
                case 0x13: value = data.Slice(i, 16).ToArray(); i += 16; break;
                case 0x7F:
                case 0xFF: value = null; break;
                default: throw new FormatException($"BSON type 0x{type:x2} of '{name}' is not read here");
            }
            doc.Elements.Add((name, value));
        }
        if (i + 1 != length) throw new FormatException($"document ends at {i + 1}, its length says {length}");
        return (doc, length);
    }

    private static string CString(ReadOnlySpan<byte> data, ref int i)
    {
        var end = data[i..].IndexOf((byte)0);
        var s = Encoding.UTF8.GetString(data.Slice(i, end));
        i += end + 1;
        return s;
    }
}
