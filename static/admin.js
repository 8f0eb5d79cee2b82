/* The admin page's live numbers and class view: polls /admin/stats (same origin, same credentials). */
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  function fmt(v, digits) { return v === null || v === undefined ? '–' : Number(v).toFixed(digits); }
  function dur(s) {
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? h + ' h ' + m + ' min' : m ? m + ' min' : s + ' s';
  }
  // Frames by how their faces were read, in a teacher's words: every test-time view of the frame
  // ("in full"), a followed face's one view averaged with its last frames' ("followed"), or one view
  // for a new face while the server was busy ("in a hurry").
  function viewsInWords(views, served) {
    var n = {full: 0, followed: 0, hurried: 0};
    Object.keys(views).forEach(function (k) {
      n[/, spread$/.test(k) ? 'followed' : !served || k === served ? 'full' : 'hurried'] += views[k];
    });
    var words = [['full', 'in full'], ['followed', 'followed'], ['hurried', 'in a hurry']];
    return words.filter(function (w) { return n[w[0]]; }).map(function (w) {
      return n[w[0]].toLocaleString() + ' ' + w[1];
    }).join(' · ') || '–';
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
      var views = s.views || {}, served = s.worker && s.worker.tta;
      $('s-views').textContent = viewsInWords(views, served);
      // the engine's own names on hover, for whoever tunes the server (docs/webapp.md)
      $('s-views-card').title = Object.keys(views).map(function (k) {
        return k + ' ' + views[k].toLocaleString();
      }).join(' · ') + (served ? '\n' + served + ': every test-time view of the frame; "' + served +
        ', spread": one view of the frame, averaged with the others from the same face\'s frames before; ' +
        'a single view: a new face while frames were waiting' : '');
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
