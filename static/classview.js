/* The teacher's class view on /admin: how many connected clients show each class now, and a stacked
 * timeline of the last minutes, from the "class" part of /admin/stats (webapp/classview.py: counts
 * only, no client and no image). admin.js polls the stats and calls FerClassView.render(cls).
 *
 *   FerClassView.render(cls)            the counts list and the canvas
 *   FerClassView.draw(canvas, cls)      the canvas alone; returns the drawn bars, for tests */
(function () {
  'use strict';

  var PAD = {top: 8, right: 30, bottom: 18, left: 2};
  var icons = window.FerIcons;  // static/icons.js: the class colours of the live page
  var color = function (l) { return icons ? icons.color(l) : '#888'; };
  var cap = function (s) { return s.charAt(0).toUpperCase() + s.slice(1); };
  var $ = function (id) { return document.getElementById(id); };

  function total(row) { return row.counts.reduce(function (a, b) { return a + b; }, 0); }

  function draw(canvas, cls) {
    var box = window.FerCanvas.setup(canvas, PAD);  // static/canvas.js
    if (!box) return [];
    var ctx = box.ctx, H = box.H, muted = box.muted, line = box.line;
    var x0 = box.x0, x1 = box.x1, y0 = box.y0, y1 = box.y1;
    var n = cls.timeline.length, span = n * cls.bucket_s;
    // the y axis counts clients: its top is the busiest period's (at least 1), rounded up to even
    var top = Math.max(1, Math.max.apply(null, cls.timeline.map(function (r) { return total(r) + r.no_face; })));
    if (top > 1 && top % 2) top += 1;
    var slot = (x1 - x0) / n, bar = Math.max(1, slot - Math.min(3, slot * 0.2));
    var Y = function (v) { return y1 - v / top * (y1 - y0); };

    ctx.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    ctx.fillStyle = muted; ctx.strokeStyle = line; ctx.lineWidth = 1;
    ctx.textBaseline = 'middle'; ctx.textAlign = 'left';
    [0, top / 2, top].forEach(function (v) {
      var y = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y); ctx.stroke();
      ctx.fillText(String(v), x1 + 5, y);
    });
    ctx.textBaseline = 'alphabetic';
    var minutes = span >= 120;
    [1, 0.5, 0].forEach(function (f) {
      var s = Math.round(span * f), x = x1 - f * (x1 - x0);
      ctx.textAlign = f === 1 ? 'left' : f === 0 ? 'right' : 'center';
      ctx.fillText(s ? '\u2212' + (minutes ? +(s / 60).toFixed(1) + ' min' : s + ' s') : 'now', x, H - 4);
    });

    var drawn = [];
    cls.timeline.forEach(function (r, i) {
      var x = x0 + i * slot + (slot - bar) / 2, below = 0;
      r.counts.forEach(function (c, k) {
        if (!c) return;
        ctx.fillStyle = color(cls.labels[k]);
        ctx.fillRect(x, Y(below + c), bar, Y(below) - Y(below + c));
        below += c;
      });
      if (r.no_face) {  // clients answered without a face: an outline on top, as on the live page
        ctx.strokeStyle = muted; ctx.setLineDash([3, 2]);
        ctx.strokeRect(x + 0.5, Y(below + r.no_face) + 0.5, bar - 1, Y(below) - Y(below + r.no_face) - 1);
        ctx.setLineDash([]);
      }
      if (below || r.no_face) drawn.push({period: i, clients: below + r.no_face});
    });
    if (!drawn.length) {
      ctx.fillStyle = muted; ctx.textAlign = 'center'; ctx.textBaseline = 'middle';
      ctx.fillText('No answers in the last ' + (minutes ? span / 60 + ' minutes' : span + ' s'), (x0 + x1) / 2, (y0 + y1) / 2);
    }
    return drawn;
  }

  function render(cls) {
    var list = $('class-now'), canvas = $('class-timeline');
    if (!list || !canvas || !cls) return;
    var now = cls.current, clients = now.clients;
    $('class-clients').textContent = clients + (clients === 1 ? ' client' : ' clients') +
      ' in the last ' + cls.window_s + ' s';
    list.textContent = '';
    var rows = cls.labels.map(function (l, k) { return {name: cap(l), color: color(l), n: now.counts[k]}; });
    rows.push({name: 'No face', color: null, n: now.no_face});
    rows.forEach(function (r) {
      var li = document.createElement('li');
      var sw = document.createElement('span');
      sw.className = r.color ? 'swatch' : 'swatch swatch-gap';
      if (r.color) sw.style.background = r.color;
      var name = document.createElement('span'); name.className = 'class-name'; name.textContent = r.name;
      var meter = document.createElement('span'); meter.className = 'class-meter';
      var fill = document.createElement('span');
      fill.style.width = (clients ? 100 * r.n / clients : 0) + '%';
      if (r.color) fill.style.background = r.color;
      meter.appendChild(fill);
      var count = document.createElement('b'); count.textContent = r.n;
      li.appendChild(sw); li.appendChild(name); li.appendChild(meter); li.appendChild(count);
      if (!r.n) li.className = 'zero';
      list.appendChild(li);
    });
    canvas.setAttribute('aria-label', 'Clients per class in each ' + cls.bucket_s + ' s over the last ' +
      Math.round(cls.timeline.length * cls.bucket_s / 60) + ' minutes');
    window.FerClassView.last = cls;
    window.FerClassView.drawn = draw(canvas, cls);
  }

  window.FerClassView = {render: render, draw: draw, last: null, drawn: []};
  window.addEventListener('resize', function () {
    if (window.FerClassView.last) render(window.FerClassView.last);
  });
})();
