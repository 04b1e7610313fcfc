using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace Collector.Metrics;

/// <summary>A monotonically increasing count, lock-free (one Interlocked add).</summary>
public sealed class Counter
{
    private long _value;
    public void Add(long n) => Interlocked.Add(ref _value, n);
    public void Increment() => Interlocked.Increment(ref _value);
    public long Value => Interlocked.Read(ref _value);
    /// <summary>For counts that another component keeps (kernel maps, librdkafka): set the total.</summary>
    public void Set(long total) => Interlocked.Exchange(ref _value, total);
}

/// <summary>A counter or gauge family with one label; label values are bounded by the caller or
/// by maxSeries (extra values fold into "other").</summary>
public sealed class LabeledCounter(string label, int maxSeries = 200)
{
    private readonly ConcurrentDictionary<string, Counter> _series = new();
    private int _count; // ConcurrentDictionary.Count takes every lock: past the cap it would be asked per lookup
    public string Label { get; } = label;

    public Counter this[string value]
    {
        get
        {
            if (_series.TryGetValue(value, out var c)) return c;
            if (Volatile.Read(ref _count) >= maxSeries) value = "other";
            return CappedSeries.GetOrAdd(_series, value, ref _count);
        }
    }

    public IEnumerable<KeyValuePair<string, Counter>> Series => _series.OrderBy(kv => kv.Key, StringComparer.Ordinal);

    public long Total => _series.Values.Sum(c => c.Value);
}

/// <summary>A series' counter, made on first use; count is the number of series made, kept apart
/// from the dictionary because its Count takes every lock.</summary>
internal static class CappedSeries
{
    public static Counter GetOrAdd<TKey>(ConcurrentDictionary<TKey, Counter> series, TKey key, ref int count) where TKey : notnull
    {
        if (series.TryGetValue(key, out var c)) return c;
        var made = new Counter();
        var kept = series.GetOrAdd(key, made);
        if (ReferenceEquals(kept, made)) Interlocked.Increment(ref count);
        return kept;
    }
}

public sealed class Histogram(double[] bounds)
{
    private readonly long[] _buckets = new long[bounds.Length + 1];
    private long _count;
    private long _sumMicros;
    public IReadOnlyList<double> Bounds { get; } = bounds;

    public void Observe(double value)
    {
        var i = 0;
        while (i < bounds.Length && value > bounds[i]) i++;
        Interlocked.Increment(ref _buckets[i]);
        Interlocked.Increment(ref _count);
        Interlocked.Add(ref _sumMicros, (long)(value * 1e6));
    }

    public long Count => Interlocked.Read(ref _count);
    public double Sum => Interlocked.Read(ref _sumMicros) / 1e6;
    public long Bucket(int i) => Interlocked.Read(ref _buckets[i]);
}

/// <summary>The Prometheus text exposition format (version 0.0.4), written by hand: no Prometheus
/// client library is served here.</summary>
public sealed class PrometheusWriter
{
    private readonly StringBuilder _sb = new();

    public PrometheusWriter Counter(string name, string help, long value) =>
        Head(name, help, "counter").Sample(name, null, null, value);

    public PrometheusWriter Counter(string name, string help, double value) =>
        Head(name, help, "counter").Sample(name, null, null, value);

    public PrometheusWriter Gauge(string name, string help, double value) =>
        Head(name, help, "gauge").Sample(name, null, null, value);

    public PrometheusWriter Labeled(string name, string help, string type, LabeledCounter family)
    {
        Head(name, help, type);
        foreach (var (value, c) in family.Series) Sample(name, family.Label, value, c.Value);
        return this;
    }

    /// <summary>A family whose samples carry several labels each.</summary>
    public PrometheusWriter Family(string name, string help, string type,
        IEnumerable<(IReadOnlyList<(string Name, string Value)> Labels, double Value)> samples)
    {
        Head(name, help, type);
        foreach (var (labels, value) in samples)
        {
            _sb.Append(name).Append('{');
            for (var i = 0; i < labels.Count; i++)
            {
                if (i > 0) _sb.Append(',');
                _sb.Append(labels[i].Name).Append("=\"");
                Escape(labels[i].Value);
                _sb.Append('"');
            }
            _sb.Append("} ").Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
        return this;
    }

    public PrometheusWriter Histogram(string name, string help, Histogram h)
    {
        Head(name, help, "histogram");
        long cumulative = 0;
        for (var i = 0; i < h.Bounds.Count; i++)
        {
            cumulative += h.Bucket(i);
            Sample(name + "_bucket", "le", h.Bounds[i].ToString(CultureInfo.InvariantCulture), cumulative);
        }
        cumulative += h.Bucket(h.Bounds.Count);
        Sample(name + "_bucket", "le", "+Inf", cumulative);
        Sample(name + "_sum", null, null, h.Sum);
        Sample(name + "_count", null, null, h.Count);
        return this;
    }

    private PrometheusWriter Head(string name, string help, string type)
    {
        _sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        _sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        return this;
    }

    private PrometheusWriter Sample(string name, string? label, string? value, double v)
    {
        _sb.Append(name);
        if (label is not null)
        {
            _sb.Append('{').Append(label).Append("=\"");
            Escape(value!);
            _sb.Append("\"}");
        }
        _sb.Append(' ').Append(v.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        return this;
    }

    private void Escape(string value)
    {
        foreach (var ch in value)
        {
            if (ch is '\\' or '"') _sb.Append('\\').Append(ch);
            else if (ch == '\n') _sb.Append("\\n");
            else _sb.Append(ch);
        }
    }

    public override string ToString() => _sb.ToString();
}
