using System.Text;
using Collector.Sensitive;

namespace Collector.Tests.Sensitive;

/// <summary>The JSON cursor's block walk (bit masks per 64 bytes) against its byte-by-byte walk:
/// the same string state and the same path at every position (and that path the one spelled
/// whole, where it is made from the parents' paths known before), over generated bodies full of
/// escapes, brackets inside strings and cut documents, and at the block boundaries.</summary>
public class JsonCursorTests
{
    private static readonly string[] Pieces =
    [
        "{", "}", "[", "]", ":", ",", "\"", "\\", "\\\"", "\\\\", "\\\\\"", "\"key\":", "\"card\":\"", "\"ssn\":", " ", "\n",
        "abc", "4111111111111111", "é", "{\"a\":[1,2,{\"b\":\"x\"}]}", "\"[{:}]\"", "\"\\\"{\"", "\"\\\\\"",
    ];

    [Fact]
    public void The_block_walk_agrees_with_the_byte_walk_everywhere()
    {
        var random = new Random(20261129);
        var positions = 0;
        // one pair of cursors for every document, as a classifier keeps one: what they know of
        // one body's paths must not carry into the next
        var (blocks, bytes) = (new JsonCursor(), new JsonCursor());
        for (var doc = 0; doc < 3000; doc++)
        {
            var sb = new StringBuilder();
            var pieces = random.Next(0, 120);
            for (var i = 0; i < pieces; i++) sb.Append(Pieces[random.Next(Pieces.Length)]);
            var body = Encoding.UTF8.GetBytes(sb.ToString());
            blocks.Reset();
            bytes.Reset();
            var target = 0;
            while (target <= body.Length)
            {
                blocks.AdvanceTo(body, target);
                bytes.AdvanceByteByByte(body, target);
                Assert.True(bytes.InString == blocks.InString, $"string state at {target} of {Encoding.UTF8.GetString(body)}");
                if (target < body.Length)
                {
                    // the path from the parents' known paths is the one spelled whole, in either body
                    var prefix = random.Next(2) == 0 ? "response.body" : "request.body";
                    var spelled = bytes.PathSpelled(prefix, body, target);
                    Assert.Equal(spelled, bytes.Path(prefix, body, target));
                    Assert.Equal(spelled, blocks.Path(prefix, body, target));
                }
                positions++;
                target += random.Next(1, 40);
            }
        }
        Assert.True(positions > 30_000, $"{positions} positions compared");
    }

    [Theory]
    [InlineData(62)]
    [InlineData(63)] // the backslash the last byte of a block, the quote it escapes the next block's first
    [InlineData(64)]
    public void An_escape_across_a_block_boundary_keeps_the_string_open(int pad)
    {
        // {"note":"xxxx\"{[:]","card":"4111111111111111"}: the escaped quote must not close the note
        var head = "{\"note\":\"" + new string('x', pad - 9);
        var json = head + "\\\"{[:]\",\"card\":\"4111111111111111\"}";
        var body = Encoding.UTF8.GetBytes(json);
        var at = json.IndexOf("4111", StringComparison.Ordinal);
        var c = new JsonCursor();
        c.Reset();
        c.AdvanceTo(body, at);
        Assert.True(c.InString);
        Assert.Equal("response.body.card", c.Path("response.body", body, at));
    }

    [Fact]
    public void Paths_of_values_and_keys_in_an_array_of_records()
    {
        var records = string.Join(",", Enumerable.Range(0, 40).Select(i => $"{{\"id\":{i},\"card\":\"4111111111111111\",\"alice@example.com\":1}}"));
        var json = "{\"customers\":[" + records + "]}";
        var body = Encoding.UTF8.GetBytes(json);
        var c = new JsonCursor();
        c.Reset();
        var cards = 0;
        var keys = 0;
        for (var at = json.IndexOf("4111", StringComparison.Ordinal); at >= 0; at = json.IndexOf("4111", at + 1, StringComparison.Ordinal))
        {
            c.AdvanceTo(body, at);
            Assert.Equal("response.body.customers.card", c.Path("response.body", body, at));
            var key = json.IndexOf("alice", at, StringComparison.Ordinal);
            c.AdvanceTo(body, key);
            Assert.Equal("response.body.customers.alice@example.com#key", c.Path("response.body", body, key));
            cards++;
            keys++;
        }
        Assert.Equal((40, 40), (cards, keys));
    }

    [Fact]
    public void A_records_paths_are_made_once_and_follow_keys_that_change_under_them()
    {
        // records of an array, then a sibling object whose keys change the parents: every path is
        // the spelled one, and the second pass over the same body makes no string
        var records = string.Join(",", Enumerable.Range(0, 30).Select(i =>
            $"{{\"email\":\"u{i}@example.com\",\"card\":{{\"number\":\"4111111111111111\"}},\"ssn\":\"536-90-{1000 + i}\"}}"));
        var json = "{\"customers\":[" + records + "],\"owner\":{\"card\":\"4111111111111111\",\"deep\":{\"card\":\"4111111111111111\"}}}";
        var body = Encoding.UTF8.GetBytes(json);
        var c = new JsonCursor();
        var targets = new List<int>();
        foreach (var needle in new[] { "@example", "4111", "536-90" })
            for (var at = json.IndexOf(needle, StringComparison.Ordinal); at >= 0; at = json.IndexOf(needle, at + 1, StringComparison.Ordinal))
                targets.Add(at);
        targets.Sort();
        var paths = new HashSet<string>();
        for (var pass = 0; pass < 2; pass++)
        {
            c.Reset();
            var before = GC.GetAllocatedBytesForCurrentThread();
            foreach (var at in targets)
            {
                c.AdvanceTo(body, at);
                var path = c.Path("response.body", body, at);
                if (pass == 0) Assert.Equal(c.PathSpelled("response.body", body, at), path);
                paths.Add(path);
            }
            if (pass == 1) Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.Equal(new[] { "response.body.customers.card.number", "response.body.customers.email", "response.body.customers.ssn",
            "response.body.owner.card", "response.body.owner.deep.card" }, paths.Order());
    }

    [Fact]
    public void Paths_deeper_than_the_levels_kept_are_the_spelled_ones()
    {
        // 70 levels of {"kN": …}, a card at the bottom, then back up to levels with keys changed under them
        var sb = new StringBuilder();
        for (var d = 0; d < 70; d++) sb.Append($"{{\"k{d}\":");
        sb.Append("\"4111111111111111\"");
        for (var d = 69; d >= 60; d--) sb.Append($",\"x{d}\":\"4111111111111111\"}}");
        sb.Append(",\"y\":{\"z\":\"4111111111111111\"}");
        var json = sb.ToString();
        var body = Encoding.UTF8.GetBytes(json);
        var c = new JsonCursor();
        c.Reset();
        var checkedPaths = 0;
        for (var at = json.IndexOf("4111", StringComparison.Ordinal); at >= 0; at = json.IndexOf("4111", at + 1, StringComparison.Ordinal))
        {
            c.AdvanceTo(body, at);
            Assert.Equal(c.PathSpelled("response.body", body, at), c.Path("response.body", body, at));
            checkedPaths++;
        }
        Assert.Equal(12, checkedPaths);
    }

    [Fact]
    public void Spelled_strings_are_their_bytes_however_many_share_a_slot()
    {
        // more spellings than slots, with ends alike (a table found by the ends must compare the rest)
        var strings = new SpelledStrings(64);
        var random = new Random(3);
        var seen = new Dictionary<string, string>();
        for (var n = 0; n < 50_000; n++)
        {
            var text = "response.body." + string.Concat(Enumerable.Range(0, random.Next(0, 4)).Select(_ => "ab.c"[random.Next(4)])) + ".card.number";
            var got = strings.Of(System.Text.Encoding.UTF8.GetBytes(text));
            Assert.Equal(text, got);
            seen.TryAdd(text, got);
        }
        Assert.True(seen.Count > 64, $"{seen.Count} spellings");
        // one spelling asked for again and again is made once
        Assert.Same(strings.Of("response.body.x"u8), strings.Of("response.body.x"u8));
    }

    [Fact]
    public void Spellings_alike_at_both_ends_are_each_found_again()
    {
        var strings = new SpelledStrings(4096);
        var spellings = new[] { "user", "shop", "cart", "item", "bill", "plan", "team", "role" }
            .Select(k => System.Text.Encoding.UTF8.GetBytes($"response.body.data.{k}.address.city")).ToArray();
        foreach (var b in spellings) strings.Of(b);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var round = 0; round < 10; round++)
            foreach (var b in spellings) strings.Of(b);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
