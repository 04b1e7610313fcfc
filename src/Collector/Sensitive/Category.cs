namespace Collector.Sensitive;

/// <summary>The built-in categories, named as Akto's processor names them so that the two
/// vocabularies line up. Custom categories of a policy take the ids after these.</summary>
public enum BuiltIn : byte
{
    CreditCard, Ssn, Email, PhoneNumber, Jwt, IpAddress, Vin, Uuid, Iban, AwsAccessKey, PrivateKey, BearerToken,
}

public static class Categories
{
    public const int BuiltInCount = 12;

    public static readonly string[] BuiltInNames =
    [
        "CREDIT_CARD", "SSN", "EMAIL", "PHONE_NUMBER", "JWT", "IP_ADDRESS", "VIN", "UUID", "IBAN", "AWS_ACCESS_KEY",
        "PRIVATE_KEY", "BEARER_TOKEN",
    ];

    public static int BuiltInId(string name) => Array.IndexOf(BuiltInNames, name);
}

/// <summary>What the name of a value (JSON key, header, form field, query parameter) says about
/// it: a value under `ssn` or `card` is the stronger signal, and bare digit runs are reported only
/// with one; under `version` a dotted quad is not an address.</summary>
[Flags]
public enum KeyHint : byte
{
    None = 0,
    Card = 1,
    Ssn = 2,
    Phone = 4,
    Version = 8,
}

public static class KeyHints
{
    /// <summary>The hint of a name: letters and digits only, lower-cased, compared with the
    /// names APIs use. No allocation; names longer than 64 bytes give none.</summary>
    public static KeyHint Of(ReadOnlySpan<byte> name)
    {
        if (name.IsEmpty || name.Length > 64) return KeyHint.None;
        Span<byte> n = stackalloc byte[64];
        var len = 0;
        foreach (var c in name)
        {
            if (c is >= (byte)'a' and <= (byte)'z' or >= (byte)'0' and <= (byte)'9') n[len++] = c;
            else if (c is >= (byte)'A' and <= (byte)'Z') n[len++] = (byte)(c | 0x20);
        }
        var k = n[..len];
        var hint = KeyHint.None;
        if (k.IndexOf("ssn"u8) >= 0 || k.IndexOf("socialsec"u8) >= 0) hint |= KeyHint.Ssn;
        if (k.IndexOf("card"u8) >= 0 || k.SequenceEqual("cc"u8) || k.SequenceEqual("ccnumber"u8) || k.SequenceEqual("ccnum"u8) ||
            k.SequenceEqual("pan"u8))
            hint |= KeyHint.Card;
        if (k.IndexOf("phone"u8) >= 0 || k.IndexOf("mobile"u8) >= 0 || k.SequenceEqual("tel"u8) || k.SequenceEqual("telephone"u8) ||
            k.SequenceEqual("cell"u8) || k.SequenceEqual("msisdn"u8) || k.SequenceEqual("fax"u8))
            hint |= KeyHint.Phone;
        if (k.IndexOf("version"u8) >= 0 || k.SequenceEqual("ver"u8) || k.SequenceEqual("v"u8)) hint |= KeyHint.Version;
        return hint;
    }
}
