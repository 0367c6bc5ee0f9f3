// bench/chart.svg: grouped bars of closed-loop deliveries/s per size, written
// as plain SVG text so the README can show it without any tooling.

import { fig, type Row, type Settings } from "./_report.ts";

const COLORS: Record<string, string> = {
  "presently-bun": "#2563eb",
  "raw-bun": "#93c5fd",
  "presently-deno": "#059669",
  "raw-deno": "#6ee7b7",
  mesh: "#f59e0b",
};
const ORDER = ["presently-bun", "raw-bun", "presently-deno", "raw-deno", "mesh"];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function short(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(2)}M`;
  if (x >= 1e3) return `${Math.round(x / 1e3)}k`;
  return String(Math.round(x));
}

/** Render the chart for one run. */
export function renderChart(rows: Row[], s: Settings): string {
  const sizes = [...new Set(rows.map((r) => r.n))].sort((a, b) => a - b);
  const targets = ORDER.filter((t) => rows.some((r) => r.target === t));
  const max = Math.max(1, ...rows.map((r) => fig(r, "loop.deliveriesPerSec") ?? 0));
  const W = 760;
  const H = 400;
  const left = 70;
  const top = 50;
  const bottom = 90;
  const plotH = H - top - bottom;
  const plotW = W - left - 20;
  const groupW = plotW / Math.max(1, sizes.length);
  const barW = Math.min(56, (groupW - 40) / Math.max(1, targets.length));
  const step = 10 ** Math.floor(Math.log10(max));
  const tick = max / step > 5 ? step * 2 : max / step > 2 ? step : step / 2;
  const yMax = Math.ceil(max / tick) * tick;
  const y = (v: number) => top + plotH - (v / yMax) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${left}" y="24" font-size="15" font-weight="600">Presence fan-out: state events delivered per second (higher is better)</text>`,
    `<text x="${left}" y="40" fill="#555">One room, P = ${s.p} publishers in a closed loop, ${s.windowS} s window, 2 shared cores; bench/RESULTS.md has the full table</text>`,
  );
  for (let v = 0; v <= yMax + 1e-9; v += tick) {
    const yy = y(v).toFixed(1);
    out.push(
      `<line x1="${left}" y1="${yy}" x2="${W - 20}" y2="${yy}" stroke="#e5e7eb"/>`,
      `<text x="${left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle" fill="#555">${
        short(v)
      }</text>`,
    );
  }
  sizes.forEach((n, gi) => {
    const gx = left + gi * groupW + (groupW - barW * targets.length) / 2;
    targets.forEach((t, ti) => {
      const row = rows.find((r) => r.target === t && r.n === n);
      const v = fig(row, "loop.deliveriesPerSec");
      const x = gx + ti * barW;
      if (v === null) {
        out.push(
          `<text x="${(x + barW / 2).toFixed(1)}" y="${
            (top + plotH - 4).toFixed(1)
          }" text-anchor="middle" fill="#999" font-size="10">not run</text>`,
        );
        return;
      }
      const yy = y(v);
      out.push(
        `<rect x="${(x + 2).toFixed(1)}" y="${yy.toFixed(1)}" width="${(barW - 4).toFixed(1)}" ` +
          `height="${(top + plotH - yy).toFixed(1)}" fill="${COLORS[t] ?? "#999"}"><title>${
            esc(row!.label)
          }, N=${n}: ${Math.round(v)} deliveries/s</title></rect>`,
        `<text x="${(x + barW / 2).toFixed(1)}" y="${
          (yy - 4).toFixed(1)
        }" text-anchor="middle" font-size="10">${short(v)}</text>`,
      );
    });
    out.push(
      `<text x="${(left + gi * groupW + groupW / 2).toFixed(1)}" y="${
        top + plotH + 18
      }" text-anchor="middle" font-weight="600">N = ${n}</text>`,
    );
  });
  out.push(
    `<line x1="${left}" y1="${top + plotH}" x2="${W - 20}" y2="${top + plotH}" stroke="#333"/>`,
  );
  let lx = left;
  let ly = H - 38;
  for (const t of targets) {
    const label = rows.find((r) => r.target === t)!.label;
    const width = 22 + label.length * 6.2;
    if (lx + width > W - 10) {
      lx = left;
      ly += 18;
    }
    out.push(
      `<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[t] ?? "#999"}"/>`,
      `<text x="${lx + 16}" y="${ly}" font-size="11">${esc(label)}</text>`,
    );
    lx = Math.round(lx + width);
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}
