// Keel console: confirm dialogs on forms that change something, and uPlot charts from JSON blocks.
// No framework, no build step; every page works without this file except the charts.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  if (typeof uPlot === "undefined") return;
  const palette = ["#0b5fff", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#5c940d"];
  for (const el of document.querySelectorAll("[data-chart]")) {
    const block = document.getElementById(el.dataset.chart);
    if (!block) continue;
    const chart = JSON.parse(block.textContent);
    const series = [{ label: el.dataset.time === "yes" ? "time" : "step" }];
    chart.labels.forEach((label, i) => series.push({ label, stroke: palette[i % palette.length], width: 2, spanGaps: true }));
    const short = (u, values) => values.map((v) => (v == null ? "" : +v.toPrecision(3)));
    const axes = [{}, { values: short, size: 60 }];
    const x = { time: el.dataset.time === "yes" };
    if (chart.range) x.range = () => chart.range; // the page's time window, not a fit to the points
    const opts = { width: 460, height: 220, series, axes, scales: { x } };
    new uPlot(opts, chart.data, el);
  }
});
