// A small live chart on a canvas: replication throughput (applied entries per second, bars),
// lag (entries behind the leader) and this page's pending writes (two lines on one scale), and
// the seconds in which the cluster had no leader or the replica no connection (shaded
// columns), over a sliding window. During a failover the bars stop, the pending line climbs
// while writes queue, a shaded gap marks the election, and the bars spike when the queue
// drains to the new leader. No chart library: a few dozen canvas calls per frame.

/** One sample: the last second of replication. */
export interface Sample {
  /** Entries applied per second. */
  rate: number;
  /** Entries behind the leader at the sample. */
  lag: number;
  /** This replica's writes not yet confirmed: the most seen during the second. */
  pending: number;
  /**
   * At some moment of the second the cluster had no leader, or the replica was not connected,
   * or it moved to another member: the gap in service.
   */
  gap: boolean;
}

/** The chart over `canvas`, keeping the last `capacity` samples. */
export class ReplicationChart {
  private readonly samples: Sample[] = [];

  /** `gapLabel` names the shaded seconds ("no leader", "no connection"). */
  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly capacity: number,
    private readonly gapLabel = "no leader",
  ) {}

  /** Adds a sample (dropping the oldest beyond the capacity) and redraws. */
  push(sample: Sample): void {
    this.samples.push(sample);
    if (this.samples.length > this.capacity) this.samples.shift();
    this.draw();
  }

  /** The samples shown, oldest first. */
  recent(): readonly Sample[] {
    return this.samples;
  }

  /** Redraws at the canvas's current CSS size and the screen's pixel ratio. */
  draw(): void {
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth || this.canvas.width;
    const height = this.canvas.clientHeight || this.canvas.height;
    if (this.canvas.width !== Math.round(width * ratio)) {
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(height * ratio);
    }
    const g = this.canvas.getContext("2d");
    if (!g) return;
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);

    const pad = { left: 34, right: 8, top: 10, bottom: 18 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const maxRate = niceCeil(Math.max(1, ...this.samples.map((s) => s.rate)));
    const maxLag = niceCeil(Math.max(1, ...this.samples.map((s) => Math.max(s.lag, s.pending))));

    // Grid and axis labels (left: entries/s).
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#8a90a3";
    g.strokeStyle = "#eceef4";
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let i = 0; i <= 2; i++) {
      const y = pad.top + (plotH * i) / 2;
      g.beginPath();
      g.moveTo(pad.left, Math.round(y) + 0.5);
      g.lineTo(pad.left + plotW, Math.round(y) + 0.5);
      g.stroke();
      g.fillText(formatCount((maxRate * (2 - i)) / 2), pad.left - 6, y);
    }
    g.textAlign = "left";
    g.textBaseline = "alphabetic";
    g.fillText("-60 s", pad.left, height - 4);
    g.textAlign = "right";
    g.fillText("now", pad.left + plotW, height - 4);

    const step = plotW / this.capacity;
    const x0 = pad.left + plotW - this.samples.length * step;

    // Gaps (no leader, no connection): shaded columns under everything else, labelled once.
    g.fillStyle = "rgba(198, 40, 40, 0.13)";
    this.samples.forEach((s, i) => {
      if (s.gap) g.fillRect(x0 + i * step, pad.top, step, plotH);
    });
    const firstGap = this.samples.findIndex((s) => s.gap);
    if (firstGap >= 0) {
      g.fillStyle = "#c62828";
      g.textAlign = "left";
      g.textBaseline = "bottom";
      const labelW = g.measureText(this.gapLabel).width;
      g.fillText(this.gapLabel, Math.min(x0 + firstGap * step + 2, pad.left + plotW - labelW), pad.top + plotH - 2);
    }

    // Throughput bars.
    g.fillStyle = "#a5b4fc";
    this.samples.forEach((s, i) => {
      const h = (s.rate / maxRate) * plotH;
      if (h > 0) g.fillRect(x0 + i * step + 0.5, pad.top + plotH - h, Math.max(1, step - 1), h);
    });

    // Lag and pending writes, lines on their own scale (labelled at their peak).
    const line = (color: string, value: (s: Sample) => number) => {
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.lineJoin = "round";
      g.beginPath();
      this.samples.forEach((s, i) => {
        const x = x0 + i * step + step / 2;
        const y = pad.top + plotH - (value(s) / maxLag) * plotH;
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      g.stroke();
    };
    line("#f59e0b", (s) => s.lag);
    line("#c62828", (s) => s.pending);
    const peakLag = Math.max(0, ...this.samples.map((s) => Math.max(s.lag, s.pending)));
    const peakRate = Math.max(0, ...this.samples.map((s) => s.rate));
    g.textBaseline = "top";
    if (peakLag > 0) {
      g.fillStyle = "#b76e00";
      g.textAlign = "right";
      g.fillText(`lag/pending peak ${formatCount(peakLag)}`, pad.left + plotW - 2, pad.top + 2);
    }
    if (peakRate === 0 && peakLag === 0) {
      g.fillStyle = "#a3a8b8";
      g.textAlign = "center";
      g.fillText("no replication traffic yet: add a note", pad.left + plotW / 2, pad.top + plotH / 2 - 6);
    }
  }
}

/** A round number at or above `value` (1, 2, 5 × 10^n). */
function niceCeil(value: number): number {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * power >= value) return m * power;
  return 10 * power;
}

function formatCount(value: number): string {
  const short = (v: number) => String(Math.round(v * 10) / 10);
  if (value >= 1e6) return `${short(value / 1e6)}M`;
  if (value >= 1e3) return `${short(value / 1e3)}k`;
  return short(value);
}
