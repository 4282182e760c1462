// A check's latency per hour as a uPlot chart: p50 and p95 with the band between them, and the
// average dashed. Used by the check's page and the admin's change page. No build step.
"use strict";

window.CHChart = (function () {
  function formatMs(ms) {
    if (ms == null) return "–";
    return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms).toLocaleString()} ms`;
  }

  // The page's colours (the dashboard's variables, else the admin's, else fixed ones).
  function colour(el, names, fallback) {
    const style = getComputedStyle(el);
    for (const name of names) {
      const value = style.getPropertyValue(name).trim();
      if (value) return value;
    }
    return fallback;
  }

  // Hourly points with a null in each hour without results: the lines break there.
  function rows(points) {
    const xs = [], p50 = [], p95 = [], avg = [];
    if (!points.length) return [xs, p50, p95, avg];
    const byHour = new Map(points.map((p) => [p.t, p]));
    const first = points[0].t, last = points[points.length - 1].t;
    for (let t = first; t <= last; t += 3600) {
      const p = byHour.get(t) || {};
      xs.push(t); p50.push(p.p50 ?? null); p95.push(p.p95 ?? null); avg.push(p.avg ?? null);
    }
    return [xs, p50, p95, avg];
  }

  function height(width) { return width < 500 ? 200 : 260; }

  function options(el, width, span) {
    const text = colour(el, ["--muted", "--body-quiet-color"], "#59636e");
    const grid = colour(el, ["--line", "--hairline-color"], "#d1d9e0");
    const accent = colour(el, ["--focus", "--link-fg"], "#0969da");
    const slow = colour(el, ["--degraded"], "#9a6700");
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
    const value = (u, v) => formatMs(v);
    return {
      width, height: height(width),
      cursor: { drag: { x: false, y: false } },
      scales: {
        // The whole range asked for: uPlot would stretch a single point's axis over years.
        x: span ? { time: true, range: () => [span[0], span[1]] } : { time: true },
        y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
      },
      series: [
        {},
        { label: "p50", stroke: accent, width: 2, value },
        { label: "p95", stroke: slow, width: 1.5, value },
        { label: "avg", stroke: text, width: 1, dash: [4, 4], value },
      ],
      // The band between p50 and p95: where most results fall.
      bands: [{ series: [2, 1], fill: accent.startsWith("#") && accent.length === 7 ? `${accent}33` : "rgba(9,105,218,0.2)" }],
      axes: [axis, { ...axis, size: 60, values: (u, ticks) => ticks.map((v) => `${v} ms`) }],
    };
  }

  // Draws into el (emptied first) over span, [from, to] in Unix seconds; follows el's width
  // from then on. Returns the uPlot.
  function draw(el, points, span) {
    el.replaceChildren();
    const plot = new window.uPlot(options(el, el.clientWidth || 600, span), rows(points), el);
    const observer = new ResizeObserver(() => {
      const width = el.clientWidth;
      if (width && Math.abs(plot.width - width) > 2) plot.setSize({ width, height: height(width) });
    });
    observer.observe(el);
    const destroy = plot.destroy.bind(plot);
    plot.destroy = () => { observer.disconnect(); destroy(); };
    return plot;
  }

  return { draw, formatMs };
})();
