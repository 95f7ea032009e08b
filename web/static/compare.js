// The comparison page: CIDEr and METEOR per step, one line per batch (dashed: METEOR).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", () => {
    const node = document.getElementById("compare-chart-data");
    const canvas = document.getElementById("compare-chart");
    if (!node || !canvas || !window.Chart) return;
    const found = JSON.parse(node.textContent);
    const colours = ["#1b6ec2", "#e07b00", "#2a9d3c", "#c2185b", "#6a1b9a", "#00838f", "#5d4037", "#827717"];
    const steps = Math.max(...Object.values(found.metrics).map((m) => m.per_step.length));
    const datasets = [];
    found.batches.forEach((batch, i) => {
      const rows = found.metrics[batch.name].per_step;
      [["CIDEr", []], ["METEOR", [6, 4]]].forEach(([metric, dash]) => {
        datasets.push({ label: `${batch.name} ${metric}`, data: rows.map((row) => 100 * row[metric]),
                        borderColor: colours[i % colours.length], backgroundColor: colours[i % colours.length],
                        borderDash: dash, tension: 0 });
      });
    });
    canvas.dataset.points = String(steps);
    new Chart(canvas, {
      type: "line", data: { labels: [...Array(steps).keys()], datasets },
      options: { animation: false, maintainAspectRatio: false,
                 scales: { x: { title: { display: true, text: "step (best caption after it)" } },
                           y: { title: { display: true, text: "metric ×100" } } } },
    });
  });
})();
