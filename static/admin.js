/* The admin page's live numbers and class view: polls /admin/stats (same origin, same credentials). */
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  function fmt(v, digits) { return v === null || v === undefined ? '–' : Number(v).toFixed(digits); }
  function dur(s) {
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? h + ' h ' + m + ' min' : m ? m + ' min' : s + ' s';
  }
  function poll() {
    fetch(document.body.dataset.statsUrl, {cache: 'no-store', credentials: 'same-origin'}).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.json();
    }).then(function (s) {
      $('s-clients').textContent = s.clients;
      var seats = s.seats || {};  // over max_clients, students wait in line (webapp/seats.py)
      $('s-seats').textContent = seats.over_capacity ? 'over capacity: ' + seats.waiting + ' waiting'
        : (seats.served === undefined ? '–' : seats.served + (seats.limit ? ' of ' + seats.limit : ''));
      $('s-fps').textContent = fmt(s.fps, 1);
      $('s-p50').textContent = fmt(s.latency_ms.p50, 0);
      $('s-p95').textContent = fmt(s.latency_ms.p95, 0);
      $('s-frames').textContent = s.frames.toLocaleString();
      var errs = 0;
      Object.keys(s.errors || {}).forEach(function (k) { errs += s.errors[k]; });
      $('s-errors').textContent = errs.toLocaleString();
      var views = s.views || {};  // frames by the views they got: ', spread' over a face's frames, one view for a new face under load
      $('s-views').textContent = Object.keys(views).map(function (k) {
        return k + ' ' + views[k].toLocaleString();
      }).join(' · ') || '–';
      $('s-batch').textContent = s.worker && s.worker.mean_batch ? fmt(s.worker.mean_batch, 2) : '–';
      $('s-worker').textContent = s.worker ? s.worker.state : 'none';
      $('uptime').textContent = '· up ' + dur(s.uptime_s);
      if (window.FerClassView) window.FerClassView.render(s['class']);  // static/classview.js
    }).catch(function () {
      $('uptime').textContent = '· stats unavailable';
    });
  }
  poll();
  setInterval(poll, 2000);
})();
