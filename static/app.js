/* Expression Live: camera -> downscaled JPEG -> Socket.IO 'frame' (binary) -> 'result' / 'error'.
 * One frame in flight: the next frame is sent only when the previous one's answer has arrived,
 * so a slow server never builds a queue. Protocol: docs/protocol.md. */
(function () {
  'use strict';

  var SEND_WIDTH = 320;        // frames are downscaled to this width before JPEG encoding
  var JPEG_QUALITY = 0.8;
  var SMOOTH_FRAMES = 6;       // smoothing: mean of the main face's last N results...
  var SMOOTH_MS = 1500;        // ...no older than this
  var ANSWER_TIMEOUT_MS = 15000;
  var icons = window.FerIcons;  // static/icons.js: class colours and font-independent face icons

  var $ = function (id) { return document.getElementById(id); };
  var video = $('video'), overlay = $('overlay'), wrap = $('videoWrap');
  var grab = document.createElement('canvas');
  var st = {
    maxFps: parseFloat(document.body.dataset.maxFps) || 15,
    running: true, camera: false, inFlight: false, sentAt: 0, lastSend: 0,
    timer: null, watchdog: null, labels: null, views: null, fps: null, bars: {}, history: [], answers: [], last: null
  };

  function cap(s) { return s ? s.charAt(0).toUpperCase() + s.slice(1) : s; }
  function setIcon(name) {  // the big icon beside the label: a class's face or a state of the page
    var box = $('icon');
    if (box.firstChild && box.firstChild.getAttribute('data-icon') === name) return;
    box.textContent = '';
    box.appendChild(icons.svg(name));
  }
  // The main face's last minute (static/timeline.js); window.ferTimeline lets scripts read it too.
  var timeline = window.ferTimeline = new window.FerTimeline($('timeline'), $('legend'), {color: icons.color, name: cap});

  // --- notices ------------------------------------------------------------------------------
  function notice(title, text, retry) {
    if (!st.camera) {
      setIcon('camera');
      $('label').textContent = 'Camera off';
      $('sub').textContent = title;
    }
    $('noticeTitle').textContent = title;
    $('noticeText').textContent = text;
    $('retry').hidden = !retry;
    $('notice').hidden = false;
  }
  function status(text) { $('status').textContent = text || ''; }
  function pill(text, kind) { var p = $('conn'); p.textContent = text; p.className = 'pill pill-' + kind; }

  // --- camera -------------------------------------------------------------------------------
  function startCamera() {
    if (!window.isSecureContext) {
      notice('The camera needs a secure page',
        'Browsers allow the camera only on https:// pages or on http://localhost. This page is ' +
        location.origin + ': open it over HTTPS (or on the server machine as localhost).', false);
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      notice('No camera access in this browser', 'This browser does not offer camera access (getUserMedia). ' +
        'Try a current Chrome, Firefox or Safari.', false);
      return;
    }
    notice('Starting the camera…', 'Your browser will ask for permission to use the camera.', false);
    navigator.mediaDevices.getUserMedia({
      video: {width: {ideal: 640}, height: {ideal: 480}, facingMode: 'user'}, audio: false
    }).then(function (stream) {
      video.srcObject = stream;
      return video.play();
    }).then(function () {
      fitVideo();
      st.camera = true;
      whyButton();
      $('notice').hidden = true;
      setIcon('waiting');
      $('label').textContent = 'Waiting for a face…';
      $('sub').textContent = 'Look at the camera';
      schedule(0);
    }).catch(function (err) {
      var name = err && err.name;
      if (name === 'NotAllowedError' || name === 'SecurityError' || name === 'PermissionDeniedError') {
        notice('Camera access was refused', 'Allow the camera for this site in your browser\'s address bar ' +
          'or site settings, then try again. Nothing is recorded: frames are analysed in memory.', true);
      } else if (name === 'NotFoundError' || name === 'OverconstrainedError' || name === 'DevicesNotFoundError') {
        notice('No camera found', 'Connect a camera (or enable it) and try again.', true);
      } else if (name === 'NotReadableError' || name === 'TrackStartError' || name === 'AbortError') {
        notice('The camera is busy', 'Another application or tab is using the camera. Close it and try again.', true);
      } else {
        notice('The camera could not start', (err && err.message) || String(err), true);
      }
    });
  }
  $('retry').addEventListener('click', startCamera);

  // --- sending frames -----------------------------------------------------------------------
  var socket = io({transports: ['websocket', 'polling'], tryAllTransports: true});

  function schedule(ms) {
    clearTimeout(st.timer);
    st.timer = setTimeout(sendFrame, Math.max(0, ms));
  }

  function settle() {  // the frame in flight got its answer (or is given up)
    st.inFlight = false;
    clearTimeout(st.watchdog);
  }

  function sendFrame() {
    if (!st.running || !st.camera || st.inFlight) return;
    if (!socket.connected || document.hidden || video.readyState < 2 || !video.videoWidth) { schedule(250); return; }
    var gap = 1000 / (st.maxFps * 0.9) - (performance.now() - st.lastSend);  // stay under the server's cap
    if (gap > 0) { schedule(gap); return; }
    var w = Math.min(SEND_WIDTH, video.videoWidth);
    var h = Math.round(video.videoHeight * w / video.videoWidth);
    st.inFlight = true;
    grabJpeg(grab, function (buf) {
      if (!buf || !socket.connected) { settle(); schedule(250); return; }
      st.sentAt = st.lastSend = performance.now();
      socket.emit('frame', buf);  // an ArrayBuffer: sent as binary, not base64
      st.watchdog = setTimeout(function () { settle(); status('No answer from the server; retrying'); schedule(0); },
        ANSWER_TIMEOUT_MS);
    });
  }

  // The video's current picture, downscaled, as JPEG bytes (an ArrayBuffer; null if encoding failed).
  function grabJpeg(canvas, done) {
    var w = Math.min(SEND_WIDTH, video.videoWidth);
    var h = Math.round(video.videoHeight * w / video.videoWidth);
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    canvas.getContext('2d').drawImage(video, 0, 0, w, h);
    canvas.toBlob(function (blob) {
      if (!blob) { done(null); return; }
      blob.arrayBuffer().then(done);
    }, 'image/jpeg', JPEG_QUALITY);
  }

  socket.on('connect', function () { pill('connected', 'ok'); status(''); schedule(0); });
  socket.on('disconnect', function (reason) {
    settle();
    pill('reconnecting…', 'wait');
    // the server closed this connection (after 'abuse'): socket.io does not reconnect by itself then
    if (reason === 'io server disconnect') setTimeout(function () { socket.connect(); }, 5000);
  });
  socket.on('connect_error', function () { pill('offline', 'bad'); });
  socket.on('hello', function (h) {
    if (h && h.max_fps) st.maxFps = h.max_fps;
    if (h && h.labels) buildBars(h.labels);
    if (h && h.views) st.views = h.views;
    if (h) whySetup(h.why_interval, h.why_ready);
  });
  socket.on('result', function (r) {
    var now = performance.now();
    settle();
    st.answers.push(now);
    if (st.running) pill('live', 'ok');
    render(r, now - st.sentAt);
    status(busyNote(r));
    schedule(0);
  });
  // A saturated shared server answers every client in turn, each at a lower rate: say so, with the
  // rate, and when a face in a full batch got fewer test-time views than the ensemble's own (a new one).
  function busyNote(r) {
    var lighter = r.views && st.views && r.views !== st.views;
    var views = lighter ? ' A face is read in one view (' + r.views + ', not ' + st.views + ') while a class waits.' : '';
    if (st.fps === null || !(r.batch > 1) || st.fps >= 0.5 * 0.9 * st.maxFps) return views.trim();
    return 'Shared server busy: ' + st.fps.toFixed(1) + ' frames/s for you (' + r.batch +
      ' frames per batch); results keep coming at this rate.' + views;
  }
  socket.on('error', function (e) {
    settle();
    var code = (e && e.code) || 'error';
    var waits = {starting: 1000, unavailable: 5000, worker_crashed: 1000, rate_limited: 500, busy: 100, timeout: 500};
    if (code === 'starting' || code === 'worker_crashed') pill('model loading…', 'wait');
    if (code === 'full') pill('in line: number ' + e.position, 'wait');  // over capacity: first come, first served
    status((e && e.reason) || code);
    schedule(code === 'full' && e.retry_after ? 1000 * e.retry_after : (waits[code] || 250));
  });
  document.addEventListener('visibilitychange', function () { if (!document.hidden) schedule(0); });

  $('pause').addEventListener('click', function () {
    st.running = !st.running;
    this.textContent = st.running ? 'Pause' : 'Resume';
    pill(st.running ? 'live' : 'paused', st.running ? 'ok' : 'wait');
    if (st.running) schedule(0);
  });
  $('smooth').addEventListener('change', function () { st.history = []; if (st.last) render(st.last, null); });

  // --- results --------------------------------------------------------------------------------
  function buildBars(labels) {
    if (st.labels && st.labels.join() === labels.join()) return;
    st.labels = labels.slice();
    timeline.setLabels(labels);
    var box = $('bars');
    box.textContent = '';
    st.bars = {};
    labels.forEach(function (l) {
      var row = document.createElement('div'); row.className = 'bar';
      var name = document.createElement('span'); name.className = 'bar-name';
      name.appendChild(icons.svg(l));
      name.appendChild(document.createTextNode(cap(l)));
      var track = document.createElement('span'); track.className = 'bar-track';
      var fill = document.createElement('span'); fill.className = 'bar-fill';
      fill.style.background = icons.color(l);
      track.appendChild(fill);
      var val = document.createElement('span'); val.className = 'bar-val'; val.textContent = '–';
      row.appendChild(name); row.appendChild(track); row.appendChild(val);
      box.appendChild(row);
      st.bars[l] = {row: row, fill: fill, val: val};
    });
  }

  function smoothed(probs, now) {
    if (!$('smooth').checked) return probs;
    st.history.push({t: now, p: probs});
    while (st.history.length > SMOOTH_FRAMES || (st.history.length && now - st.history[0].t > SMOOTH_MS)) st.history.shift();
    var out = {};
    Object.keys(probs).forEach(function (k) {
      var s = 0;
      st.history.forEach(function (h) { s += h.p[k] || 0; });
      out[k] = s / st.history.length;
    });
    return out;
  }

  function argmax(p) {
    var best = null;
    Object.keys(p).forEach(function (k) { if (best === null || p[k] > p[best]) best = k; });
    return best;
  }

  function render(r, rtt) {
    var now = performance.now(), wall = Date.now();  // the same instant on both clocks
    var faces = r.faces || [];
    st.last = r;
    if (faces.length && !st.labels) buildBars(Object.keys(faces[0].probabilities));
    var main = null;
    if (faces.length) {
      var probs = rtt === null ? faces[0].probabilities : smoothed(faces[0].probabilities, now);
      var label = argmax(probs);
      main = {label: label, probs: probs};
      setIcon(label);
      $('label').textContent = cap(label);
      $('label').style.color = icons.color(label);
      $('sub').textContent = Math.round(100 * probs[label]) + '% confidence' +
        (faces.length > 1 ? ' · ' + faces.length + ' faces' : '');
      Object.keys(st.bars).forEach(function (l) {
        var v = probs[l] || 0, b = st.bars[l];
        b.fill.style.width = (100 * v).toFixed(1) + '%';
        b.val.textContent = Math.round(100 * v) + '%';
        b.row.classList.toggle('top', l === label);
      });
      renderVotes(faces[0].members || {});
    } else {
      st.history = [];
      setIcon('noface');
      $('label').textContent = 'No face in view';
      $('label').style.color = '';
      $('sub').textContent = 'Face the camera, with light on your face';
      Object.keys(st.bars).forEach(function (l) {
        st.bars[l].fill.style.width = '0%'; st.bars[l].val.textContent = '–'; st.bars[l].row.classList.remove('top');
      });
      renderVotes(null);
    }
    drawOverlay(r, main);
    if (rtt !== null) {  // a new answer (not a redraw of the last one): one more sample in the timeline
      timeline.add({t: now, wall: wall, faces: faces.length, label: main && main.label,
        probs: main && main.probs, smoothed: !!main && $('smooth').checked});
      $('csv').disabled = false;
    }
    timeline.draw(now);
    // numbers
    st.answers = st.answers.filter(function (t) { return now - t < 2000; });
    st.fps = st.answers.length > 1 ? 1000 * (st.answers.length - 1) / (st.answers[st.answers.length - 1] - st.answers[0]) : null;
    if (st.fps !== null) $('fps').textContent = st.fps.toFixed(1);
    if (rtt !== null) $('rtt').textContent = Math.round(rtt);
    if (typeof r.ms === 'number') $('srv').textContent = Math.round(r.ms);
    $('nfaces').textContent = faces.length;
  }

  function renderVotes(members) {
    var ul = $('votes');
    ul.textContent = '';
    if (!members || !Object.keys(members).length) {
      var li = document.createElement('li'); li.className = 'muted'; li.textContent = 'No face yet';
      ul.appendChild(li);
      return;
    }
    Object.keys(members).forEach(function (name) {
      var m = members[name];
      var li = document.createElement('li');
      var n = document.createElement('span'); n.className = 'vote-name'; n.textContent = name;
      var v = document.createElement('span'); v.className = 'vote-label';
      v.appendChild(icons.svg(m.label));
      v.appendChild(document.createTextNode(m.label));
      v.style.borderColor = icons.color(m.label);
      var c = document.createElement('span'); c.className = 'vote-conf';
      c.textContent = Math.round(100 * m.confidence) + '%';
      li.appendChild(n); li.appendChild(v); li.appendChild(c);
      ul.appendChild(li);
    });
  }

  // Boxes in the frame's pixels -> the displayed (mirrored, scaled) video.
  function drawOverlay(r, main) {
    var dpr = window.devicePixelRatio || 1;
    var W = video.clientWidth, H = video.clientHeight;
    if (overlay.width !== Math.round(W * dpr) || overlay.height !== Math.round(H * dpr)) {
      overlay.width = Math.round(W * dpr); overlay.height = Math.round(H * dpr);
    }
    var ctx = overlay.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    if (!r || !r.width || !r.height || !r.faces) return;
    var sx = W / r.width, sy = H / r.height;
    var textFont = '600 14px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    var ICON = 16;
    ctx.textBaseline = 'middle';
    r.faces.forEach(function (f, i) {
      var label = i === 0 && main ? main.label : f.label;
      var p = i === 0 && main ? main.probs[label] : f.probabilities[label];
      var color = icons.color(label);
      var x = W - (f.box[0] + f.box[2]) * sx, y = f.box[1] * sy, w = f.box[2] * sx, h = f.box[3] * sy;
      ctx.lineWidth = i === 0 ? 3 : 2;
      ctx.strokeStyle = color;
      roundRect(ctx, x, y, w, h, 10); ctx.stroke();
      var text = label + ' ' + Math.round(100 * p) + '%';
      ctx.font = textFont;
      var th = 24, ty = y - th - 4 < 0 ? y + h + 4 : y - th - 4;
      var withIcon = typeof Path2D === 'function';  // without Path2D: no icon, and no gap for it
      var tx = x + (withIcon ? 6 + ICON + 5 : 8);
      var tw = tx - x + ctx.measureText(text).width + 8;
      ctx.fillStyle = color;
      roundRect(ctx, x, ty, tw, th, 8); ctx.fill();
      if (withIcon) icons.draw(ctx, label, x + 6, ty + (th - ICON) / 2, ICON);
      ctx.fillStyle = '#fff';
      ctx.fillText(text, tx, ty + th / 2 + 1);
    });
  }

  function roundRect(ctx, x, y, w, h, r) {
    ctx.beginPath();
    ctx.moveTo(x + r, y);
    ctx.arcTo(x + w, y, x + w, y + h, r);
    ctx.arcTo(x + w, y + h, x, y + h, r);
    ctx.arcTo(x, y + h, x, y, r);
    ctx.arcTo(x, y, x + w, y, r);
    ctx.closePath();
  }

  // The wrapper takes the camera's aspect ratio: the video fills it, no letterbox to correct for.
  function fitVideo() {
    if (!video.videoWidth || !video.videoHeight) return;
    var ratio = video.videoWidth / video.videoHeight;
    wrap.style.aspectRatio = video.videoWidth + ' / ' + video.videoHeight;
    wrap.style.width = 'min(100%, calc(54vh * ' + ratio.toFixed(4) + '))';
  }
  video.addEventListener('loadedmetadata', fitVideo);
  video.addEventListener('resize', fitVideo);  // phones rotating: the camera's size changes
  window.addEventListener('resize', function () { if (st.last) drawOverlay(st.last, null); timeline.draw(); });
  // the chart keeps moving while answers are slow or missing (frozen while paused)
  setInterval(function () { if (st.running && !document.hidden) timeline.draw(performance.now()); }, 1000);
  $('csv').addEventListener('click', function () { timeline.download(); });

  // --- "Why?": the crop the members saw and what drove their label (static/why.js) ------------
  // One request in flight, and none sooner than the server's why_interval after the last: the
  // button says so by being disabled, so the server's 'busy' and 'rate_limited' never come.
  var WHY_RETRIES = 20;  // 'starting' answers retried while the explainer loads: a minute or more
  var why = {interval: null, ready: false, inFlight: false, readyAt: 0, timer: null, retries: 0,
    grab: document.createElement('canvas')};
  function whyStatus(text) { $('whyStatus').textContent = text || ''; }
  function whyButton() {
    $('why').disabled = why.interval === null || why.inFlight || !st.camera || !socket.connected ||
      performance.now() < why.readyAt;
  }
  function whySetup(interval, ready) {
    why.interval = typeof interval === 'number' ? interval : null;
    why.ready = ready === true;  // false: the server loads the explainer on the first request
    if (why.interval === null) whyStatus('Explanations are turned off on this server.');
    whyButton();
  }
  function whyDone(retryAfter) {
    why.inFlight = false;
    clearTimeout(why.timer);
    var wait = 1000 * Math.max(why.interval || 0, retryAfter || 0);
    why.readyAt = performance.now() + wait;
    whyButton();
    setTimeout(whyButton, wait + 50);
  }
  function askWhy() {
    if (why.inFlight || !st.camera || video.readyState < 2) return;
    why.inFlight = true;
    whyButton();
    if (!why.retries) {
      whyStatus(why.ready ? 'Asking the networks…'
        : 'Getting the explanations ready: the first one takes a few seconds…');
    }
    grabJpeg(why.grab, function (buf) {
      if (!buf || !socket.connected) { whyDone(); whyStatus('Could not send the picture; try again.'); return; }
      socket.emit('why', buf);
      why.timer = setTimeout(function () { whyDone(); whyStatus('No explanation came back; try again.'); },
        2 * ANSWER_TIMEOUT_MS + 10000);
    });
  }
  $('why').addEventListener('click', function () { why.retries = 0; askWhy(); });
  socket.on('why_result', function (r) { why.ready = true; whyDone(); whyStatus(''); showWhy(r); });
  socket.on('why_error', function (e) {
    var code = e && e.code;
    whyDone(e && e.retry_after);
    // the first request of a server's life loads the explainer, which may outlast one request: ask again
    if (code === 'starting' && why.retries < WHY_RETRIES) {
      why.retries++;
      whyStatus('The server is loading the networks for explanations (the first time only)…');
      setTimeout(askWhy, 1000 * Math.max(why.interval || 0, 1) + 100);
      return;
    }
    whyStatus(code === 'no_face' ? 'No face in the picture: face the camera and ask again.' : (e && e.reason) || 'error');
  });
  socket.on('disconnect', function () { if (why.inFlight) whyDone(); });
  socket.on('connect', whyButton);

  function showWhy(r) {
    var why3 = window.FerWhy, crop = why3.decode(r.crop), ens = why3.decode(r.maps.ensemble);
    var label = r.label, pct = Math.round(100 * r.probabilities[label]), where = why3.where(ens);
    why3.draw($('whyCrop'), crop, null);
    why3.draw($('whyHeat'), crop, ens);
    why3.drawScale($('whyScale'));
    $('whyHeatCap').textContent = 'Ensemble: ' + cap(label) + ' ' + pct + '%, evidence strongest in ' + where;
    $('whyHeat').setAttribute('aria-label', 'Heat map over the face: the evidence for ' + label +
      ' is strongest in ' + where + ' of the face');
    $('whyMembersNote').textContent = 'each one\'s map for ' + label + ', and its own vote';
    var box = $('whyMembers');
    box.textContent = '';
    Object.keys(r.maps.members).forEach(function (name) {
      var vote = (r.members || {})[name] || {}, map = why3.decode(r.maps.members[name]);
      var fig = document.createElement('figure'), c = document.createElement('canvas');
      c.width = c.height = 96;
      c.setAttribute('role', 'img');
      c.setAttribute('aria-label', name + "'s heat map for " + label + ', strongest in ' + why3.where(map) +
        '; its own vote: ' + vote.label + ' ' + Math.round(100 * (vote.confidence || 0)) + '%');
      c.dataset.member = name;
      why3.draw(c, crop, map);
      var cap2 = document.createElement('figcaption');
      var n = document.createElement('b'); n.textContent = name;
      cap2.appendChild(n);
      cap2.appendChild(document.createTextNode(': ' + vote.label + ' ' + Math.round(100 * (vote.confidence || 0)) + '%'));
      fig.appendChild(c); fig.appendChild(cap2);
      box.appendChild(fig);
    });
    $('whyPanel').hidden = false;
    $('why').setAttribute('aria-expanded', 'true');
  }
  startCamera();
})();
