// The job page: draws the score chart, and keeps it and the history table in step with the
// live panel that htmx swaps in every second (see templates/_job_live.html).
(function () {
  "use strict";
  let chart = null;
  let stepsSeen = null;

  function chartData() {
    const node = document.getElementById("chart-data");
    return node ? JSON.parse(node.textContent) : [];
  }

  function drawChart() {
    const steps = chartData();
    const labels = steps.map((s) => s.step);
    const best = steps.map((s) => s.best_score);
    const mean = steps.map((s) => s.mean_topk);
    if (chart) {
      chart.data.labels = labels;
      chart.data.datasets[0].data = best;
      chart.data.datasets[1].data = mean;
      chart.update("none");
      return;
    }
    const canvas = document.getElementById("score-chart");
    if (!canvas || !window.Chart) return;
    chart = new Chart(canvas, {
      type: "line",
      data: {
        labels,
        datasets: [
          { label: "best score", data: best, borderColor: "#1b6ec2", backgroundColor: "#1b6ec2", tension: 0 },
          { label: "mean of the top K", data: mean, borderColor: "#e07b00", backgroundColor: "#e07b00", borderDash: [5, 4], tension: 0 },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { x: { title: { display: true, text: "step" } }, y: { title: { display: true, text: "score" } } },
      },
    });
    canvas.dataset.points = String(labels.length);
  }

  function onLiveUpdate() {
    drawChart();
    const live = document.getElementById("live");
    const steps = live ? live.dataset.stepsDone : null;
    if (stepsSeen !== null && steps !== stepsSeen) {
      // A new step landed: refresh the history table with its current filters.
      htmx.trigger("#history-form", "refresh");
    }
    stepsSeen = steps;
    const canvas = document.getElementById("score-chart");
    if (canvas) canvas.dataset.points = String(chartData().length);
  }

  document.addEventListener("DOMContentLoaded", onLiveUpdate);
  document.addEventListener("htmx:afterSettle", (event) => {
    if (event.target.id === "live") onLiveUpdate();
  });
  // Column headers sort the table by setting the form's sort field.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.sort");
    if (!button) return;
    const select = document.getElementById("history-sort");
    select.value = button.dataset.sort;
    select.dispatchEvent(new Event("change", { bubbles: true }));
  });
})();
