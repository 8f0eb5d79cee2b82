/* The main face's class probabilities over the last minute: stacked bands on a canvas (each class's
 * share of the height is its probability, in the bars' colours), and the same samples as a CSV that
 * the browser builds and downloads itself: nothing about it is sent to or stored on the server.
 *
 *   var tl = new FerTimeline(canvas, legendList, {color: fn(label), name: fn(label)});
 *   tl.setLabels(['angry', ...]); tl.add({t, wall, faces, label, probs, smoothed}); tl.draw(now);
 *   tl.csv() -> text; tl.download() */
(function () {
  'use strict';

  var WINDOW_MS = 60000;       // the chart's width in time
  var KEEP_MS = 10 * 60000;    // what the CSV holds: the last ten minutes...
  var MAX_SAMPLES = 20000;     // ...and never more samples than this, whatever the frame rate
  var GAP_MS = 2000;           // samples further apart are not joined (pause, hidden tab, no answers)
  var PAD = {top: 7, right: 38, bottom: 18, left: 2};

  function Timeline(canvas, legend, opts) {
    opts = opts || {};
    this.canvas = canvas;
    this.legend = legend;
    this.color = opts.color || function () { return '#888'; };
    this.name = opts.name || function (l) { return l; };
    this.labels = [];
    this.samples = [];
    this.lastNow = null;
  }

  Timeline.prototype.setLabels = function (labels) {
    if (this.labels.join() === labels.join()) return;
    this.labels = labels.slice();
    this.samples = [];  // columns changed: old rows would not fit the CSV's header
    if (!this.legend) return;
    var self = this;
    this.legend.textContent = '';
    labels.forEach(function (l) {
      var li = document.createElement('li');
      var sw = document.createElement('span'); sw.className = 'swatch'; sw.style.background = self.color(l);
      li.appendChild(sw);
      li.appendChild(document.createTextNode(self.name(l)));
      self.legend.appendChild(li);
    });
    var gap = document.createElement('li'); gap.className = 'legend-gap';
    var sw = document.createElement('span'); sw.className = 'swatch swatch-gap';
    gap.appendChild(sw);
    gap.appendChild(document.createTextNode('no face'));
    this.legend.appendChild(gap);
  };

  // One result: t (performance.now(), ms), wall (Date.now()), faces in the frame, the label shown and
  // the probabilities behind it (null when no face), whether they were smoothed.
  Timeline.prototype.add = function (s) {
    if (typeof s.t !== 'number' || !isFinite(s.t)) throw new Error('timeline sample needs a time t, got ' + s.t);
    this.samples.push({t: s.t, wall: s.wall, faces: s.faces || 0, label: s.label || null,
      probs: s.probs || null, smoothed: !!s.smoothed});
    var cut = s.t - KEEP_MS, n = 0;
    while (n < this.samples.length && this.samples[n].t < cut) n++;
    n = Math.max(n, this.samples.length - MAX_SAMPLES);
    if (n > 0) this.samples.splice(0, n);
  };

  Timeline.prototype.draw = function (now) {
    var c = this.canvas;
    if (now === undefined) now = this.lastNow === null ? performance.now() : this.lastNow;
    this.lastNow = now;
    var box = window.FerCanvas.setup(c, PAD);  // static/canvas.js
    if (!box) return;
    var ctx = box.ctx, H = box.H, muted = box.muted, line = box.line;
    var x0 = box.x0, x1 = box.x1, y0 = box.y0, y1 = box.y1;
    var pw = x1 - x0, ph = y1 - y0;
    var X = function (t) { return x1 - (now - t) / WINDOW_MS * pw; };
    var Y = function (p) { return y1 - p * ph; };

    // the frame: 0 / 50 / 100 % and the seconds
    ctx.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    ctx.fillStyle = muted;
    ctx.strokeStyle = line;
    ctx.lineWidth = 1;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'left';
    [0, 0.5, 1].forEach(function (p) {
      var y = Math.round(Y(p)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y); ctx.stroke();
      ctx.fillText(Math.round(100 * p) + '%', x1 + 5, y);
    });
    ctx.textBaseline = 'alphabetic';
    [60, 45, 30, 15, 0].forEach(function (s) {
      var x = x1 - s / 60 * pw;
      ctx.textAlign = s === 60 ? 'left' : s === 0 ? 'right' : 'center';
      ctx.fillText(s ? '\u2212' + s + ' s' : 'now', x, H - 4);
    });

    var shown = this.samples.filter(function (s) { return s.t >= now - WINDOW_MS - GAP_MS && s.t <= now; });
    if (!shown.some(function (s) { return s.probs; })) {
      ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
      ctx.fillText('The main face\'s last minute appears here', x0 + pw / 2, y0 + ph / 2);
      return;
    }
    // runs of consecutive samples with a face, joined unless more than GAP_MS apart
    var runs = [], run = null;
    shown.forEach(function (s) {
      if (!s.probs) { run = null; return; }
      if (!run || s.t - run[run.length - 1].t > GAP_MS) { run = []; runs.push(run); }
      run.push(s);
    });
    ctx.save();
    ctx.beginPath(); ctx.rect(x0, y0 - 1, pw, ph + 2); ctx.clip();
    var labels = this.labels, color = this.color;
    runs.forEach(function (r) {
      // a lone sample still gets a visible sliver
      var xs = r.length > 1 ? r.map(function (s) { return X(s.t); }) : [X(r[0].t) - 1.5, X(r[0].t) + 1.5];
      var pts = r.length > 1 ? r : [r[0], r[0]];
      var below = pts.map(function () { return 0; });
      labels.forEach(function (l) {
        var above = pts.map(function (s, i) { return below[i] + (s.probs[l] || 0); });
        ctx.beginPath();
        for (var i = 0; i < pts.length; i++) ctx.lineTo(xs[i], Y(above[i]));
        for (var j = pts.length - 1; j >= 0; j--) ctx.lineTo(xs[j], Y(below[j]));
        ctx.closePath();
        ctx.fillStyle = color(l);
        ctx.fill();
        below = above;
      });
    });
    ctx.restore();
  };

  function field(v) {
    var s = v === null || v === undefined ? '' : String(v);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  // time (ISO 8601, UTC), seconds since the first row, faces in the frame, the label shown, whether it
  // was smoothed (1/0), then one probability per class; a frame without a face leaves the last ones empty.
  Timeline.toCSV = function (labels, samples) {
    var rows = [['time', 'seconds', 'faces', 'label', 'smoothed'].concat(labels).map(field).join(',')];
    var t0 = samples.length ? samples[0].t : 0;
    samples.forEach(function (s) {
      var row = [new Date(s.wall).toISOString(), ((s.t - t0) / 1000).toFixed(3), s.faces,
        s.label || '', s.probs ? (s.smoothed ? 1 : 0) : ''];
      labels.forEach(function (l) { row.push(s.probs ? (s.probs[l] || 0).toFixed(4) : ''); });
      rows.push(row.map(field).join(','));
    });
    return rows.join('\r\n') + '\r\n';
  };

  Timeline.prototype.csv = function () { return Timeline.toCSV(this.labels, this.samples); };

  Timeline.prototype.download = function () {
    var blob = new Blob([this.csv()], {type: 'text/csv;charset=utf-8'});
    var url = URL.createObjectURL(blob);
    var a = document.createElement('a');
    var stamp = new Date().toISOString().slice(0, 19).replace(/:/g, '-');
    a.href = url;
    a.download = 'expressions-' + stamp + '.csv';
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);  // after the browser has taken it
  };

  Timeline.WINDOW_MS = WINDOW_MS;
  Timeline.KEEP_MS = KEEP_MS;
  window.FerTimeline = Timeline;
})();
