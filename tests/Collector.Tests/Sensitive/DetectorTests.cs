using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Text;
using Collector.Sensitive;
using FsCheck;
using FsCheck.Fluent;

namespace Collector.Tests.Sensitive;

/// <summary>Each built-in category on its own: samples it must find, near misses it must not.</summary>
public class DetectorTests
{
    private static List<(string Category, string Text)> Scan(string value, KeyHint hint = KeyHint.None, ValueKind kind = ValueKind.Text)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        var found = new List<ValueMatch>();
        ValueScanner.Scan(bytes, hint, kind, ValueScanner.AllBuiltIns, found);
        return found.Select(m => (Categories.BuiltInNames[(int)m.Category], Encoding.UTF8.GetString(bytes, m.Start, m.Length))).ToList();
    }

    private static void Finds(string category, string value, string match, KeyHint hint = KeyHint.None, ValueKind kind = ValueKind.Text) =>
        Assert.Contains((category, match), Scan(value, hint, kind));

    private static void FindsNothing(string value, KeyHint hint = KeyHint.None, ValueKind kind = ValueKind.Text) =>
        Assert.Empty(Scan(value, hint, kind));

    [Theory]
    [InlineData("4111111111111111")]          // Visa
    [InlineData("4111 1111 1111 1111")]
    [InlineData("4111-1111-1111-1111")]
    [InlineData("5500005555555559")]          // Mastercard
    [InlineData("2223000048400011")]          // Mastercard 2-series
    [InlineData("378282246310005")]           // American Express
    [InlineData("6011111111111117")]          // Discover
    [InlineData("3530111333300000")]          // JCB
    [InlineData("30569309025904")]            // Diners Club
    public void Card_numbers_with_a_brand_and_a_right_check_digit_are_found(string card) =>
        Finds("CREDIT_CARD", $"paid with {card}, thanks", card);

    [Theory]
    [InlineData("4111111111111112")]          // Luhn fails
    [InlineData("4111 1111 1111 1121")]       // Luhn fails
    [InlineData("1234567812345670")]          // Luhn right, no brand starts with 1
    [InlineData("1764000000000")]             // a timestamp in milliseconds
    [InlineData("9876543210123456")]          // an order id
    [InlineData("41111111111111111111111")]   // longer than any card
    [InlineData("4111111111111111abc")]       // part of a word
    public void Near_miss_card_numbers_are_not(string text) =>
        Assert.DoesNotContain(Scan(text), f => f.Category == "CREDIT_CARD");

    [Fact]
    public void A_card_as_a_json_number_is_found() =>
        Finds("CREDIT_CARD", "4111111111111111", "4111111111111111", kind: ValueKind.JsonNumber);

    [Theory]
    [InlineData("536-90-4399")]
    [InlineData("536 90 4399")]
    public void Formatted_ssns_are_found(string ssn) => Finds("SSN", $"ssn is {ssn}.", ssn);

    [Theory]
    [InlineData("000-12-3456")]   // area 000
    [InlineData("666-12-3456")]   // area 666
    [InlineData("912-34-5678")]   // area 900-999
    [InlineData("536-00-4399")]   // group 00
    [InlineData("536-90-0000")]   // serial 0000
    [InlineData("078-05-1120")]   // the Woolworth wallet card
    [InlineData("219-09-9999")]   // the 1962 advertisement
    [InlineData("123-45-6789")]
    [InlineData("2024-01-15")]    // a date
    public void Invalid_and_sample_ssns_are_not(string text) =>
        Assert.DoesNotContain(Scan(text, KeyHint.Ssn), f => f.Category == "SSN");

    [Fact]
    public void Nine_bare_digits_are_an_ssn_only_under_an_ssn_key()
    {
        FindsNothing("536904399");
        Finds("SSN", "536904399", "536904399", KeyHint.Ssn);
        Finds("SSN", "536904399", "536904399", KeyHint.Ssn, ValueKind.JsonNumber);
        Assert.Equal(KeyHint.Ssn, KeyHints.Of("customer_SSN"u8) & KeyHint.Ssn);
        Assert.Equal(KeyHint.Ssn, KeyHints.Of("socialSecurityNumber"u8) & KeyHint.Ssn);
        Assert.Equal(KeyHint.None, KeyHints.Of("orderId"u8));
    }

    [Theory]
    [InlineData("alice@example.com")]
    [InlineData("bob.smith+tag@mail.example.co.uk")]
    [InlineData("x_y-z%1@sub-domain.example.org")]
    public void Emails_are_found(string email) => Finds("EMAIL", $"<p>write to {email}.</p>", email);

    [Theory]
    [InlineData("user@localhost")]
    [InlineData("@example.com")]
    [InlineData("alice@")]
    [InlineData("alice@example.c")]
    [InlineData("alice@-example.com")]
    [InlineData("alice@example..com")]
    [InlineData("alice@example.-mail.com")]
    [InlineData("alice@example-.mail.com")]
    [InlineData("alice.@example.com")]
    [InlineData("git@github.com:org/repo")]   // found: github.com is a domain; shows the span stops at ':'
    public void Malformed_emails_are_not(string text)
    {
        var found = Scan(text).Where(f => f.Category == "EMAIL").ToList();
        if (text.StartsWith("git@")) Assert.Equal([("EMAIL", "git@github.com")], found);
        else Assert.Empty(found);
    }

    [Theory]
    [InlineData("+14155552671")]
    [InlineData("+1 415-555-2671")]
    [InlineData("+44 20 7946 0958")]
    [InlineData("(415) 555-2671")]
    [InlineData("415-555-2671")]
    public void Phone_numbers_valid_in_their_plan_are_found(string phone) => Finds("PHONE_NUMBER", $"call {phone} now", phone);

    [Theory]
    [InlineData("1764000000")]      // a Unix time
    [InlineData("20241115")]        // a date
    [InlineData("1.2.3")]           // a version
    [InlineData("+1 000-000-0000")] // not in the plan
    [InlineData("415.5552671")]     // not 3-3-4
    [InlineData("12.50")]           // a price
    public void Digit_runs_that_are_no_phone_are_not(string text) =>
        Assert.DoesNotContain(Scan(text), f => f.Category == "PHONE_NUMBER");

    [Fact]
    public void The_remembered_phone_answers_are_libphonenumbers_own()
    {
        // more numbers than the cache has ways for in many sets: asked twice each, in two orders,
        // every answer (remembered, evicted or asked again) is the library's
        var random = new Random(7);
        var numbers = Enumerable.Range(0, 6000).Select(_ => random.Next(4) switch
        {
            0 => $"+1 415-555-{random.Next(10000):D4}",
            1 => $"({random.Next(200, 999)}) {random.Next(200, 999)}-{random.Next(10000):D4}",
            2 => $"+44 20 {random.Next(7000, 8000)} {random.Next(10000):D4}",
            _ => $"{random.Next(100, 999)}-{random.Next(100, 999)}-{random.Next(10000):D4}",
        }).ToArray();
        var truth = numbers.Select(n => Validators.Phone(Encoding.ASCII.GetBytes(n))).ToArray();
        Assert.Contains(true, truth);
        Assert.Contains(false, truth);
        foreach (var order in new[] { numbers.Select((n, i) => i), numbers.Select((n, i) => numbers.Length - 1 - i) })
            foreach (var i in order)
            {
                var token = Encoding.ASCII.GetBytes(numbers[i]);
                var digits = token.Where(Validators.IsDigit).ToArray();
                Assert.True(truth[i] == Validators.Phone(token, digits, token[0] == '+'), numbers[i]);
            }
    }

    [Fact]
    public void Bare_digits_are_a_phone_only_under_a_phone_key()
    {
        FindsNothing("4155552671");
        Finds("PHONE_NUMBER", "4155552671", "4155552671", KeyHint.Phone);
        Assert.Equal(KeyHint.Phone, KeyHints.Of("mobilePhone"u8) & KeyHint.Phone);
    }

    private const string Jwt =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    [Fact]
    public void Jwts_are_found_and_lookalikes_are_not()
    {
        Finds("JWT", $"token={Jwt}", Jwt);
        // three base64url parts whose header is JSON without alg
        var noAlg = Convert.ToBase64String(Encoding.UTF8.GetBytes("{\"typ\":\"JWT\"}")).TrimEnd('=') + ".eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        Assert.DoesNotContain(Scan(noAlg), f => f.Category == "JWT");
        Assert.DoesNotContain(Scan("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.only-two-parts"), f => f.Category == "JWT");
    }

    [Fact]
    public void Ip_addresses_are_found_and_versions_are_not()
    {
        Finds("IP_ADDRESS", "client 203.0.113.9 connected", "203.0.113.9");
        Finds("IP_ADDRESS", "from 2001:db8::1 today", "2001:db8::1");
        Finds("IP_ADDRESS", "10.0.0.9:8080", "10.0.0.9");
        FindsNothing("1.2.3");
        FindsNothing("10.0.19045.2965");
        FindsNothing("256.1.1.1");
        FindsNothing("1.2.3.4.5");
        Assert.DoesNotContain(Scan("1.2.3.4", KeyHint.Version), f => f.Category == "IP_ADDRESS");
    }

    [Fact]
    public void Vins_need_their_check_digit()
    {
        Finds("VIN", "vin 1M8GDM9AXKP042788", "1M8GDM9AXKP042788");
        Finds("VIN", "1HGCM82633A004352", "1HGCM82633A004352");
        FindsNothing("1M8GDM9A1KP042788"); // check digit wrong
        FindsNothing("11111111111111111");  // digits only
    }

    [Fact]
    public void Uuids_are_found_and_uuid_like_ids_are_not()
    {
        Finds("UUID", "/users/550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000");
        FindsNothing("550e8400-e29b-41d4-a716-44665544000");   // one short
        FindsNothing("550e8400e29b41d4a716446655440000");      // no dashes
        FindsNothing("550e8400-e29b-01d4-a716-446655440000");  // version 0
        FindsNothing("550e8400-e29b-41d4-c716-446655440000");  // variant c
        FindsNothing("ORDER-2024-0001-0002-000000000042xyz");
    }

    [Fact]
    public void Ibans_need_mod_97()
    {
        Finds("IBAN", "pay to DE89370400440532013000 today", "DE89370400440532013000");
        Finds("IBAN", "GB82WEST12345698765432", "GB82WEST12345698765432");
        FindsNothing("DE89370400440532013001");
        FindsNothing("XX00ABCDEFGHIJKLMNOP");
    }

    [Fact]
    public void Aws_access_keys_need_a_known_prefix()
    {
        Finds("AWS_ACCESS_KEY", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE");
        Finds("AWS_ACCESS_KEY", "ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A");
        FindsNothing("AKIBIOSFODNN7EXAMPLE");
        FindsNothing("akiaiosfodnn7example");
    }

    [Fact]
    public void Private_keys_are_found_by_their_pem_block()
    {
        const string key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
        Finds("PRIVATE_KEY", "key: " + key + "\n", key);
        Finds("PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\\nMIIE", "-----BEGIN PRIVATE KEY-----", kind: ValueKind.JsonEscaped);
        Assert.DoesNotContain(Scan("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"), f => f.Category == "PRIVATE_KEY");
    }

    [Fact]
    public void Bearer_tokens_are_found_in_authorization_values_only()
    {
        Finds("BEARER_TOKEN", "Bearer abc.def-123", "abc.def-123", kind: ValueKind.Authorization);
        Finds("BEARER_TOKEN", "bearer  " + Jwt, Jwt, kind: ValueKind.Authorization);
        Finds("JWT", "Bearer " + Jwt, Jwt, kind: ValueKind.Authorization);
        Assert.DoesNotContain(Scan("Bearer abc.def-123"), f => f.Category == "BEARER_TOKEN");
        Assert.DoesNotContain(Scan("Basic dXNlcjpwYXNz", kind: ValueKind.Authorization), f => f.Category == "BEARER_TOKEN");
    }

    [Theory]
    [InlineData("{\"id\":4821,\"status\":\"shipped\",\"total\":129.95}")]
    [InlineData("version 2.14.1 built 2025-11-25T10:00:00Z")]
    [InlineData("order ORD-20241115-000123 placed at 1764000000")]
    [InlineData("Tue, 25 Nov 2025 10:00:00 GMT")]
    [InlineData("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.6099.109")]
    [InlineData("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    public void Ordinary_traffic_has_no_findings(string text) => FindsNothing(text);

    [Fact]
    public void A_match_never_starts_inside_a_json_escape()
    {
        // \n before the digits is an escape: the card still counts, and the span starts at the digits
        Finds("CREDIT_CARD", "line\\n4111111111111111", "4111111111111111", kind: ValueKind.JsonEscaped);
        Assert.All(Scan("\\u00404111111111111111", kind: ValueKind.JsonEscaped), f => Assert.DoesNotContain("\\", f.Text));
    }

    [Fact]
    public void Only_enabled_categories_are_scanned()
    {
        var found = new List<ValueMatch>();
        ValueScanner.Scan("alice@example.com 4111111111111111"u8, KeyHint.None, ValueKind.Text, 1u << (int)BuiltIn.Email, found);
        Assert.Equal([BuiltIn.Email], found.Select(f => f.Category));
    }

    [Theory]
    [InlineData("4111111111111111", BuiltIn.CreditCard)] // a run of digits (7 or more)
    [InlineData("550e8400-e29b-41d4-a716-446655440000", BuiltIn.Uuid)] // a run of token bytes (15 or more)
    [InlineData("AKIAIOSFODNN7EXAMPLE", BuiltIn.AwsAccessKey)]
    public void A_match_is_found_wherever_the_block_edges_cut_it_and_at_the_very_end(string match, BuiltIn category)
    {
        // the blocks carry a run's bytes into the next: every cut of the match by a block edge, and
        // the last bytes of the body (fewer than a block) holding it whole or in part, at every width
        var widths = WideBlocksSupported ? new[] { false, true } : [false];
        try
        {
            foreach (var wide in widths)
            {
                ValueScanner.WideBlocks = wide;
                for (var at = 0; at <= 200; at++)
                    foreach (var after in new[] { 0, 1, 30, 70 })
                    {
                        var body = Encoding.ASCII.GetBytes("{\"k\":\"" + Filler(at) + "\",\"m\":\"" + match + "\"" + new string(' ', after) + "}");
                        var found = new List<ValueMatch>();
                        ValueScanner.Scan(body, KeyHint.None, ValueKind.JsonEscaped, ValueScanner.AllBuiltIns, found);
                        var start = body.AsSpan().IndexOf(Encoding.ASCII.GetBytes(match));
                        Assert.True(found.Contains(new ValueMatch(category, start, match.Length)), $"wide {wide}, at {at}, after {after}");
                    }
            }
        }
        finally
        {
            ValueScanner.WideBlocks = WideBlocksSupported;
        }
        // (text no block stops at: short words, so that only the match's own run can make it read)
        static string Filler(int length) => string.Concat(Enumerable.Repeat("ab ", length / 3 + 1))[..length];
    }

    private static readonly string[] Pieces =
    [
        "4111111111111111", "4111 1111 1111 1111", "5500-0055-5555-5559", "536-90-4399", "alice@example.com", "+14155552671",
        "(415) 555-2671", "415-555-2671", "203.0.113.9", "1M8GDM9AXKP042788", "550e8400-e29b-41d4-a716-446655440000",
        "DE89370400440532013000", "AKIAIOSFODNN7EXAMPLE", "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "hello", "{\"id\":12345,", "\"name\":\"item-7\"", " ", "  ", "\n", ",", ":", "12.50", "1.2.3", "v2", "-", "(", ")", "+",
        "                ", "x", "Z", "0", "99", "2024-01-15", "1764000000",
    ];

    [Fact]
    public void The_vector_pre_filter_skips_only_what_holds_no_match()
    {
        var text = Gen.Choose(8, 200).SelectMany(n => Gen.ArrayOf(Gen.Elements(Pieces), n)).Select(p => string.Concat(p)).ToArbitrary();
        var widths = WideBlocksSupported ? new[] { false, true } : [false];
        try
        {
            Prop.ForAll(text, t =>
            {
                var bytes = Encoding.UTF8.GetBytes(t);
                var every = new List<ValueMatch>();
                ValueScanner.ScanEveryToken(bytes, ValueKind.JsonEscaped, ValueScanner.AllBuiltIns, every);
                foreach (var wide in widths)
                {
                    // both block widths: a machine with AVX-512 would otherwise never run the 32-byte one
                    ValueScanner.WideBlocks = wide;
                    var fast = new List<ValueMatch>();
                    ValueScanner.Scan(bytes, KeyHint.None, ValueKind.JsonEscaped, ValueScanner.AllBuiltIns, fast);
                    Assert.Equal(every.OrderBy(m => m.Start).ThenBy(m => m.Category), fast.OrderBy(m => m.Start).ThenBy(m => m.Category));
                }
            }).Check(Config.QuickThrowOnFailure.WithMaxTest(500));
        }
        finally
        {
            ValueScanner.WideBlocks = WideBlocksSupported;
        }
    }

    private static readonly string[] PemPieces =
    [
        "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----\n", "-----END PRIVATE KEY-----",
        "-----BEGIN CERTIFICATE-----", "-----", "----", "-", "--", "BEGIN ", "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu",
        "\n", " ", "4111111111111111", "alice@example.com", "{\"key\":\"", "\"}", "x", "12",
    ];

    [Fact]
    public void Private_keys_found_in_the_block_pass_are_those_of_the_search_before_it_in_the_same_order()
    {
        if (!WideBlocksSupported) return; // only the 64-byte blocks look for dashes
        var text = Gen.Choose(1, 60).SelectMany(n => Gen.ArrayOf(Gen.Elements(PemPieces), n)).Select(p => string.Concat(p)).ToArbitrary();
        try
        {
            Prop.ForAll(text, t =>
            {
                var bytes = Encoding.UTF8.GetBytes(t);
                foreach (var kind in new[] { ValueKind.Text, ValueKind.JsonEscaped, ValueKind.Authorization })
                    for (var cut = Math.Max(0, bytes.Length - 70); cut <= bytes.Length; cut++)
                    {
                        var value = bytes.AsSpan(0, cut);
                        ValueScanner.WideBlocks = false;
                        var searched = new List<ValueMatch>();
                        ValueScanner.Scan(value, KeyHint.None, kind, ValueScanner.AllBuiltIns, searched);
                        var every = new List<ValueMatch>();
                        ValueScanner.ScanEveryToken(value, kind, ValueScanner.AllBuiltIns, every);
                        ValueScanner.WideBlocks = true;
                        var blocks = new List<ValueMatch>();
                        ValueScanner.Scan(value, KeyHint.None, kind, ValueScanner.AllBuiltIns, blocks);
                        // the keys as the search finds them, in front of what the tokens find
                        var keys = every.Where(m => m.Category == BuiltIn.PrivateKey).ToArray();
                        Assert.Equal(keys, blocks.SkipWhile(m => m.Category == BuiltIn.BearerToken).Take(keys.Length));
                        Assert.Equal(keys, searched.SkipWhile(m => m.Category == BuiltIn.BearerToken).Take(keys.Length));
                        Assert.Equal(searched.OrderBy(m => m.Start).ThenBy(m => m.Category), blocks.OrderBy(m => m.Start).ThenBy(m => m.Category));
                    }
            }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
        }
        finally
        {
            ValueScanner.WideBlocks = WideBlocksSupported;
        }
    }

    // what a header value, a parameter or the end of a body holds: numbers split every way a
    // number token allows, short IPv6 forms, times, addresses, escapes
    private static readonly string[] ShortPieces =
    [
        "415 -555 -2671", "415  555  2671", "(415) 555-2671", "+1 415 555 2671", "+14155552671", "4155552671", "536904399",
        "536 90 4399", "536-90-4399", "4111 1111 1111 1111", "4111111111111111", "203.0.113.9", "1.2.3.4", "v1.2.3.4",
        "::1", "fe80::1", "2001:db8::8a2e:370:7334", "::ffff:192.0.2.1", "1:2:3:4:5:6:7:8", "10:00:00", "a@b.co", "x@", "@",
        "alice@example.com", "AKIAIOSFODNN7EXAMPLE", "1M8GDM9AXKP042788", "DE89370400440532013000", Jwt,
        "550e8400-e29b-41d4-a716-446655440000", "\\n", "\\u0040", "\\", " ", "  ", "-", ".", "(", ")", ":", ",", "/", "=", "\"",
        "x", "Z", "0", "12", "99 ", "2025", "Tue, 25 Nov 2025 ", "bench/1.0", "nginx/1.22.1", "page=2&size=50",
    ];

    [Fact]
    public void Short_values_and_body_ends_skipped_by_their_shape_hold_no_match()
    {
        var text = Gen.Choose(1, 12).SelectMany(n => Gen.ArrayOf(Gen.Elements(ShortPieces), n)).Select(p => string.Concat(p)).ToArbitrary();
        KeyHint[] hints = [KeyHint.None, KeyHint.Phone | KeyHint.Ssn | KeyHint.Card, KeyHint.Version];
        Prop.ForAll(text, t =>
        {
            var bytes = Encoding.UTF8.GetBytes(t);
            foreach (var kind in new[] { ValueKind.Text, ValueKind.JsonEscaped })
                foreach (var hint in hints)
                {
                    var every = new List<ValueMatch>();
                    ValueScanner.ScanEveryToken(bytes, kind, ValueScanner.AllBuiltIns, every, hint);
                    if (every.Count > 0) Assert.True(ValueScanner.MayHoldMatch(bytes), t);
                    // (a longer value is read by blocks, which skip some forms on purpose: the property above covers its end)
                    if (bytes.Length >= 64) continue;
                    var fast = new List<ValueMatch>();
                    ValueScanner.Scan(bytes, hint, kind, ValueScanner.AllBuiltIns, fast);
                    Assert.Equal(every.OrderBy(m => m.Start).ThenBy(m => m.Category), fast.OrderBy(m => m.Start).ThenBy(m => m.Category));
                }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2000));
    }

    [Fact]
    public void The_shape_check_by_bit_masks_answers_as_the_one_byte_by_byte()
    {
        // the short pieces and any bytes at all, up to the 128 bytes the masks take (and past them)
        var piece = Gen.OneOf(Gen.Elements(ShortPieces),
            Gen.Choose(0, 255).Select(c => ((char)c).ToString()),
            Gen.Elements(" ", "0", "1", ":", "-", ".", "a", "F", "(", "@", "+", "_", "\u00e9"));
        var text = Gen.Choose(0, 40).SelectMany(n => Gen.ArrayOf(piece, n)).Select(p => string.Concat(p)).ToArbitrary();
        Prop.ForAll(text, t =>
        {
            var bytes = Encoding.Latin1.GetBytes(t);
            for (var cut = 0; cut <= Math.Min(bytes.Length, 140); cut++)
            {
                var s = bytes.AsSpan(0, cut);
                var expected = ValueScanner.MayHoldMatchByteByByte(s);
                Assert.True(expected == ValueScanner.MayHoldMatch(s), $"{cut}: {t}");
                if (cut <= 128 && Vector512.IsHardwareAccelerated) Assert.True(expected == ValueScanner.MayHoldMatchByMasks(s), $"{cut}: {t}");
                if (cut <= 64 && Vector512.IsHardwareAccelerated) Assert.True(expected == ValueScanner.MayHoldMatchIn64(s), $"{cut}: {t}");
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(1000));
    }

    [Theory]
    [InlineData("bench/1.0")]
    [InlineData("nginx/1.22.1")]
    [InlineData("4096")]
    [InlineData("application/json")]
    [InlineData("dead:beef::")] // no byte a token starts from: never read, whatever its shape
    [InlineData("{\"id\":12345,\"name\":\"item-123\",\"price\":5.6}        ]}")]
    public void Values_of_no_matchable_shape_are_not_read_token_by_token(string value) =>
        Assert.False(ValueScanner.MayHoldMatch(Encoding.UTF8.GetBytes(value)));

    [Theory]
    [InlineData("415 -555 -2671")]
    [InlineData("fe80::1")]
    [InlineData("10:00:00")]
    [InlineData("x@y")]
    [InlineData("1.2.3.4")]
    [InlineData("abcdefghijklmnO")]
    public void Values_that_could_hold_a_match_are_read(string value) =>
        Assert.True(ValueScanner.MayHoldMatch(Encoding.UTF8.GetBytes(value)));

    [Fact]
    public void The_ipv6_group_count_check_refuses_only_what_the_parser_refuses()
    {
        // strings of the bytes an IPv6 token may hold, in the shapes around the counted ones
        string[] pieces = ["1", "ff", "0db8", "abcd", ":", "::", ":", ".", "192.0.2.1", "1.2", "10"];
        var text = Gen.Choose(1, 16).SelectMany(n => Gen.ArrayOf(Gen.Elements(pieces), n)).Select(p => string.Concat(p)).ToArbitrary();
        Prop.ForAll(text, t =>
        {
            var parsed = System.Net.IPAddress.TryParse(t, out var a) && a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
            Assert.True((parsed && t.Length is >= 3 and <= 45) == Validators.Ipv6(Encoding.ASCII.GetBytes(t)), t);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(5000));
    }

    [Theory]
    [InlineData("1:2:3:4:5:6:7:8")]
    [InlineData("1:2:3:4:5:6:1.2.3.4")]
    [InlineData("1:2:3:4:5:1.2.3.4")]
    [InlineData("1:2:3:4:5:6:7")]
    [InlineData("1:2:3:4:5:6:7:8:9")]
    [InlineData("::ffff:1.2.3.4")]
    [InlineData("1::")]
    [InlineData("10:00:00")]
    [InlineData("aa:bb:cc:dd:ee:ff")]
    public void The_ipv6_group_count_check_agrees_with_the_parser_on_the_counted_shapes(string text)
    {
        var parsed = System.Net.IPAddress.TryParse(text, out var a) && a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        Assert.Equal(parsed, Validators.Ipv6(Encoding.ASCII.GetBytes(text)));
    }

    private static bool WideBlocksSupported => Vector512.IsHardwareAccelerated && Avx512BW.IsSupported;

    [Fact]
    public void The_table_lookup_classes_of_64_bytes_are_those_of_two_32_byte_blocks()
    {
        if (!WideBlocksSupported) return; // the table lookup needs AVX-512
        var bytes = new byte[66];
        void Same()
        {
            var (run, word, at) = ValueScanner.ClassesByTable(Vector512.Create(bytes.AsSpan(0, 64)), bytes[64]);
            var (run0, word0, at0) = ValueScanner.Classes(Vector256.Create(bytes.AsSpan(0, 32)), Vector256.Create(bytes.AsSpan(1, 32)));
            var (run1, word1, at1) = ValueScanner.Classes(Vector256.Create(bytes.AsSpan(32, 32)), Vector256.Create(bytes.AsSpan(33, 32)));
            Assert.Equal((ulong)run1 << 32 | run0, run);
            Assert.Equal((ulong)word1 << 32 | word0, word);
            Assert.Equal((ulong)at1 << 32 | at0, at);
        }
        // every byte value beside every byte value (the space rule looks at the byte after)
        for (var a = 0; a < 256; a++)
            for (var b = 0; b < 256; b++)
            {
                for (var i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i % 2 == 0 ? a : b);
                Same();
            }
        // and mixed blocks, mostly of the bytes the classes are about
        var random = new Random(16);
        var common = " 0123456789()-._:@+azAZ\"/\t"u8.ToArray();
        for (var round = 0; round < 20000; round++)
        {
            for (var i = 0; i < bytes.Length; i++) bytes[i] = random.Next(4) == 0 ? (byte)random.Next(256) : common[random.Next(common.Length)];
            Same();
        }
    }

    [Fact]
    public void The_masks_of_a_region_answer_for_each_value_in_it_as_the_byte_by_byte_check()
    {
        if (!ValueScanner.RegionMasks.Accelerated) return; // the region is read only with 64-byte vectors
        var piece = Gen.OneOf(Gen.Elements(ShortPieces), Gen.Elements("User-Agent: ", "\r\n", "-----", "----", "-", "\u00e9", "a"),
            Gen.Choose(0, 255).Select(c => ((char)c).ToString()));
        var text = Gen.Choose(0, 60).SelectMany(n => Gen.ArrayOf(piece, n)).Select(p => string.Concat(p)).ToArbitrary();
        var masks = new ValueScanner.RegionMasks();
        var random = new Random(7);
        Prop.ForAll(text, t =>
        {
            var region = Encoding.Latin1.GetBytes(t);
            masks.Load(region);
            Assert.Equal(region.AsSpan().IndexOf("-----"u8) >= 0, masks.FiveDashes);
            for (var k = 0; k < 40 && region.Length > 0; k++)
            {
                var offset = random.Next(region.Length);
                var length = 1 + random.Next(Math.Min(64, region.Length - offset));
                var value = region.AsSpan(offset, length);
                Assert.True(ValueScanner.MayHoldMatchByteByByte(value) == masks.MayHoldMatch(offset, length), $"{offset}+{length}: {t}");
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(1000));
    }

    [Fact]
    public void A_header_block_s_values_of_no_matchable_shape_are_skipped_by_its_masks()
    {
        if (!ValueScanner.RegionMasks.Accelerated) return;
        // a request's and a response's fields as a message keeps them: names and values one after another
        (string Name, string Value, bool Read)[] fields =
        [
            ("Host", "api.example.internal:8080", true), ("User-Agent", "bench/1.0", false), ("Accept", "application/json", false),
            ("Accept-Encoding", "gzip, deflate, br", false), ("X-Request-Id", "5f0c4a8e-0001-4b1e-9f0d-2c7a5e6b8d10", true),
            ("Content-Length", "4096", false), ("Server", "nginx/1.22.1", false), ("Date", "Tue, 25 Nov 2025 10:00:00 GMT", true),
            ("Connection", "keep-alive", false), ("X-Forwarded-For", "fe80::1", true), ("From", "a@b.co", true),
            ("X-Phone", "415  555  2671", true), ("Cache-Control", "no-store, max-age=0", false), ("X-Count", "123456", false),
            ("Content-Type", "application/x-www-form-urlencoded", false),
        ];
        var region = Encoding.ASCII.GetBytes(string.Concat(fields.Select(f => f.Name + f.Value)));
        var starts = new List<int>();
        var offset = 0;
        foreach (var f in fields)
        {
            starts.Add(offset);
            starts.Add(offset += f.Name.Length);
            offset += f.Value.Length;
        }
        var masks = new ValueScanner.RegionMasks();
        Assert.True(masks.Load(region));
        for (var i = 0; i < fields.Length; i++)
        {
            var value = region.AsSpan(starts[2 * i + 1], fields[i].Value.Length);
            Assert.True(fields[i].Read == masks.MayHoldMatch(starts[2 * i + 1], value.Length), fields[i].Name);
        }
        // a value cut by the edge of two 64-byte blocks at every place: its run is counted across it
        foreach (var v in new[] { "1234567", "abcdefghijklmnO", "+1 415 555 2671" })
            for (var pad = 40; pad < 70; pad++)
            {
                var cut = Encoding.ASCII.GetBytes(new string('/', pad) + v);
                Assert.True(masks.Load(cut));
                Assert.True(masks.MayHoldMatch(pad, v.Length), $"{v} at {pad}");
            }
    }

    [Fact]
    public void Http_dates_hold_nothing_and_only_their_shape_is_taken_for_one()
    {
        Assert.True(Validators.ImfFixdate("Tue, 25 Nov 2025 10:00:00 GMT"u8));
        Assert.True(Validators.ImfFixdate("Sun, 06 Nov 1994 08:49:37 GMT"u8));
        Assert.False(Validators.ImfFixdate("Tue, 25 Nov 2025 10:00:00 UTC"u8));
        Assert.False(Validators.ImfFixdate("Tue, 25 Nov 2025 10:00:0a GMT"u8));
        Assert.False(Validators.ImfFixdate("Tue, 25 Nov 2025 10:00:00 GMT "u8));
        Assert.False(Validators.ImfFixdate("Tuesday, 25-Nov-25 10:00:00 GMT"u8));
        Assert.False(Validators.ImfFixdate("4111, 11 1111 1111:11:11 GMT"u8));
        // whatever letters and digits stand in its places, the token reading finds nothing in one
        var letter = Gen.Elements("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".ToCharArray());
        var digit = Gen.Elements("0123456789".ToCharArray());
        var date = Gen.ArrayOf(letter, 6).SelectMany(l => Gen.ArrayOf(digit, 12).Select(d =>
            $"{l[0]}{l[1]}{l[2]}, {d[0]}{d[1]} {l[3]}{l[4]}{l[5]} {d[2]}{d[3]}{d[4]}{d[5]} {d[6]}{d[7]}:{d[8]}{d[9]}:{d[10]}{d[11]} GMT")).ToArbitrary();
        Prop.ForAll(date, d =>
        {
            var bytes = Encoding.ASCII.GetBytes(d);
            Assert.True(Validators.ImfFixdate(bytes), d);
            foreach (var hint in new[] { KeyHint.None, KeyHint.Phone | KeyHint.Ssn | KeyHint.Card })
            {
                var every = new List<ValueMatch>();
                ValueScanner.ScanEveryToken(bytes, ValueKind.Text, ValueScanner.AllBuiltIns, every, hint);
                Assert.True(every.Count == 0, d);
            }
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2000));
    }

    [Fact]
    public void The_uuid_check_by_vector_answers_as_the_one_byte_by_byte()
    {
        static bool Reference(string s)
        {
            if (s.Length != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return false;
            for (var i = 0; i < 36; i++)
                if (i is not (8 or 13 or 18 or 23) && !Uri.IsHexDigit(s[i])) return false;
            return s[14] is >= '1' and <= '8' && char.ToLowerInvariant(s[19]) is '8' or '9' or 'a' or 'b';
        }
        var random = new Random(11);
        const string near = "0123456789abcdefABCDEF-gG/:@`";
        var tested = 0;
        for (var n = 0; n < 200_000; n++)
        {
            var chars = Guid.NewGuid().ToString().ToCharArray();
            if (n % 2 == 0) chars[14] = "12345678"[random.Next(8)];
            if (n % 3 == 0) chars[19] = "89abAB"[random.Next(6)];
            for (var k = random.Next(3); k > 0; k--) chars[random.Next(36)] = near[random.Next(near.Length)];
            var s = new string(chars);
            Assert.True(Reference(s) == Validators.Uuid(Encoding.ASCII.GetBytes(s)), s);
            if (Reference(s)) tested++;
        }
        Assert.True(tested > 10_000, $"{tested} valid ones");
    }
}
