// The batch page: the chart of the mean best score per step (kept in step with the live panel
// that htmx swaps in every 2 s) and, once evaluated, the chart of each caption metric per step.
(function () {
  "use strict";
  let scoreChart = null;
  let stepsSeen = null;

  function json(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function drawScores() {
    const steps = json("batch-chart-data") || [];
    const labels = steps.map((s) => s.step);
    const mean = steps.map((s) => s.mean_best_score);
    const canvas = document.getElementById("batch-score-chart");
    if (!canvas || !window.Chart) return;
    canvas.dataset.points = String(labels.length);
    if (scoreChart) {
      scoreChart.data.labels = labels;
      scoreChart.data.datasets[0].data = mean;
      scoreChart.update("none");
      return;
    }
    scoreChart = new Chart(canvas, {
      type: "line",
      data: { labels, datasets: [{ label: "mean best score", data: mean, borderColor: "#1b6ec2", backgroundColor: "#1b6ec2", tension: 0 }] },
      options: { animation: false, maintainAspectRatio: false,
                 scales: { x: { title: { display: true, text: "step" } }, y: { title: { display: true, text: "score" } } } },
    });
  }

  function drawMetrics() {
    const evaluation = json("metric-chart-data");
    const canvas = document.getElementById("batch-metric-chart");
    if (!evaluation || !canvas || !window.Chart) return;
    const colours = ["#1b6ec2", "#e07b00", "#2a9d3c", "#c2185b", "#6a1b9a", "#00838f", "#5d4037", "#827717"];
    const labels = evaluation.per_step.map((row) => row.step);
    const datasets = evaluation.metrics.map((metric, i) => ({
      label: metric, data: evaluation.per_step.map((row) => 100 * row[metric]),
      borderColor: colours[i % colours.length], backgroundColor: colours[i % colours.length], tension: 0,
    }));
    canvas.dataset.points = String(labels.length);
    new Chart(canvas, {
      type: "line", data: { labels, datasets },
      options: { animation: false, maintainAspectRatio: false,
                 scales: { x: { title: { display: true, text: "step (best caption after it)" } },
                           y: { title: { display: true, text: "metric ×100" } } } },
    });
  }

  document.addEventListener("DOMContentLoaded", () => { drawScores(); drawMetrics(); });
  document.addEventListener("htmx:afterSettle", (event) => {
    if (event.target.id !== "batch-live") return;
    drawScores();
    // New steps landed: the items table (its first page, with its status filter) shows them too.
    const steps = event.target.dataset.stepsDone;
    if (stepsSeen !== null && steps !== stepsSeen) htmx.trigger("#items-form", "refresh");
    stepsSeen = steps;
  });
  document.addEventListener("DOMContentLoaded", () => {
    const live = document.getElementById("batch-live");
    stepsSeen = live ? live.dataset.stepsDone : null;
  });
})();
