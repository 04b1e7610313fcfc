using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Collector.Sensitive;
using FsCheck;
using FsCheck.Fluent;
using static Collector.Tests.Sensitive.Exchanges;

namespace Collector.Tests.Sensitive;

/// <summary>Masking over generated JSON documents full of sensitive values, escapes and numbers:
/// nothing outside a matched span changes, a span is whole string content (no bare quote, no cut
/// escape) or a whole number, and valid JSON stays valid JSON of the same shape.</summary>
public class MaskingPropertyTests
{
    private static readonly string[] Samples =
    [
        "4111111111111111", "4111 1111 1111 1111", "378282246310005", "536-90-4399", "alice@example.com", "bob.s+x@mail.example.co.uk",
        "+14155552671", "(415) 555-2671", "203.0.113.9", "2001:db8::1", "1M8GDM9AXKP042788", "550e8400-e29b-41d4-a716-446655440000",
        "DE89370400440532013000", "AKIAIOSFODNN7EXAMPLE", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    ];

    private static readonly string[] Noise =
    [
        "hello", "order 42", "1.2.3", "v2.14.1", "1764000000", " ", "\"", "\\", "\n", "\t", "é", "😀", "\u0001", "a@b", "4111111111111112",
        "12/29", "id=7&x=y", "<tag>", "+", "-", ".", "@", "::", "123-45-678",
    ];

    private static readonly string[] Keys = ["id", "name", "ssn", "card", "email", "phone", "note", "data", "items", "version", "token", "mobile"];

    private static Gen<string> Text =>
        Gen.Choose(0, 6).SelectMany(n => Gen.ArrayOf(Gen.Frequency((2, Gen.Elements(Samples)), (3, Gen.Elements(Noise))), n))
            .Select(parts => string.Concat(parts));

    private static Gen<JsonNode?> Leaf =>
        Gen.Frequency(
            (5, Text.Select(t => (JsonNode?)JsonValue.Create(t))),
            (1, Gen.Elements(4111111111111111L, 536904399L, 1764000000L, 42L, 0L).Select(n => (JsonNode?)JsonValue.Create(n))),
            (1, Gen.Elements(12.5, -3.0, 1e21).Select(d => (JsonNode?)JsonValue.Create(d))),
            (1, Gen.Elements(0, 1, 2).Select(k => k == 2 ? null : (JsonNode?)JsonValue.Create(k == 1))));

    private static Gen<JsonNode?> Node(int depth) =>
        depth == 0 ? Leaf : Gen.Frequency(
            (3, Leaf),
            (1, Gen.Choose(0, 4).SelectMany(n => Gen.ArrayOf(Gen.Zip(Gen.Elements(Keys), Node(depth - 1)), n)).Select(kvs =>
            {
                var o = new JsonObject();
                foreach (var (k, v) in kvs) o[k] = v?.DeepClone();
                return (JsonNode?)o;
            })),
            (1, Gen.Choose(0, 3).SelectMany(n => Gen.ArrayOf(Node(depth - 1), n)).Select(items => (JsonNode?)new JsonArray(items.Select(i => i?.DeepClone()).ToArray()))));

    private static readonly JsonSerializerOptions Relaxed = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static Gen<string> Document =>
        Gen.Zip(Gen.Elements(true, false), Node(4)).Select(t =>
        {
            var root = t.Item2 is JsonObject or JsonArray ? t.Item2.DeepClone() : new JsonObject { ["v"] = t.Item2?.DeepClone() };
            // both escapings: the relaxed one leaves +, <, é as they are, the default one writes \uXXXX
            return root!.ToJsonString(t.Item1 ? Relaxed : null);
        });

    private static readonly SensitivePolicy MaskAll = Policy("categories:\n" +
        string.Concat(Categories.BuiltInNames.Select(n => $"  {n}: {{action: mask}}\n")));

    [Fact]
    public void Masking_changes_only_matched_spans_and_keeps_valid_json_valid()
    {
        _spansSeen = 0;
        Prop.ForAll(Document.ToArbitrary(), MaskingKeepsEverythingElse).Check(Config.QuickThrowOnFailure.WithMaxTest(400));
        Assert.True(_spansSeen > 100, $"only {_spansSeen} spans masked over 400 documents: the generator lost its samples");
    }

    private static int _spansSeen;

    private static void MaskingKeepsEverythingElse(string json)
    {
        using var x = Make("/p", responseBody: json);
        var (message, _, classifier) = Run(x, MaskAll);
        var masked = message!.Value.GetProperty("responsePayload").GetString()!;
        var original = Encoding.UTF8.GetBytes(json);
        var output = Encoding.UTF8.GetBytes(masked);

        var o = 0;
        var p = 0;
        foreach (var (start, length) in classifier.LastBodySpans.OrderBy(s => s.Start))
        {
            _spansSeen++;
            if (start < p) continue; // inside a span already masked
            var span = original.AsSpan(start, length);
            // a span is a run of digits (a whole number) or a piece of string content made of whole
            // characters and whole escapes (a PEM block holds \n): it can be cut out and replaced
            var text = Encoding.UTF8.GetString(span);
            Assert.True(text.All(char.IsAsciiDigit) || IsStringContent(text), $"a span is not whole string content: {text} in {json}");
            // the bytes before the span are the same bytes
            Assert.True(original.AsSpan(p, start - p).SequenceEqual(output.AsSpan(o, start - p)), $"bytes before a span changed in {json} → {masked}");
            o += start - p;
            // the mask: a bracketed category and hash, or digits for a whole number
            var maskEnd = o;
            if (output[o] == '[') maskEnd = Array.IndexOf(output, (byte)']', o) + 1;
            else while (maskEnd < output.Length && maskEnd - o < length && char.IsAsciiDigit((char)output[maskEnd])) maskEnd++;
            Assert.True(maskEnd > o, $"no mask where a span was: {masked}");
            o = maskEnd;
            p = start + length;
        }
        Assert.True(original.AsSpan(p).SequenceEqual(output.AsSpan(o)), $"bytes after the last span changed in {json} → {masked}");

        using var before = JsonDocument.Parse(json);
        using var after = JsonDocument.Parse(masked); // throws when masking broke the document
        Assert.Equal(Shape(before.RootElement), Shape(after.RootElement));
    }

    private static bool IsStringContent(string s)
    {
        try
        {
            using var d = JsonDocument.Parse("\"" + s + "\"");
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>The document with every string and number value left out: its keys, nesting and types.</summary>
    private static string Shape(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "{" + string.Join(",", e.EnumerateObject().Select(p => p.Name + ":" + Shape(p.Value))) + "}",
        JsonValueKind.Array => "[" + string.Join(",", e.EnumerateArray().Select(Shape)) + "]",
        var kind => kind.ToString(),
    };
}
