// streamrt browser client: microphone -> AudioWorklet -> 16 kHz PCM over a WebSocket (protocol v1,
// docs/protocol.md) -> live captions. Page parameters: ?token=T (bearer token), ?encoding=pcm_f32le,
// ?autostart=1&seconds=N (start at load, stop after N s; used by the end-to-end tests), ?video=1
// (camera on: a preview, JPEG frames to the server on the audio's media clock, a lip-activity meter
// from its `lips` messages; docs/video.md).
(function () {
  'use strict';
  const SAMPLE_RATE = 16000;
  const CHUNK_MS = 100;
  const FRAME_MS = 66; // ~15 frames per second to the server
  const FRAME_W = 320, FRAME_H = 240;
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  // Everything the page received, readable by tests through the DevTools protocol.
  const state = (window.streamrtState = { committed: [], partial: '', ready: null, end: null, errors: [], sentBytes: 0,
    closeCode: null, lips: [], framesSent: 0 });
  let ws = null, ctx = null, stream = null, node = null, frameTimer = null;
  let mediaStart = null; // AudioContext time of the first sample sent: media time 0

  function showLips(frames) {
    const last = frames[frames.length - 1];
    $('lipstate').textContent = last.state + (last.score === null ? '' : ' ' + last.score.toFixed(2));
    $('lipfill').style.width = (last.score === null ? 0 : Math.round(last.score * 100)) + '%';
    $('lipfill').className = last.state === 'active' ? 'active' : '';
  }

  // Frames go out stamped with the audio's media clock: the AudioContext's time since the first
  // audio sample sent (the server lines them up with the audio that way).
  function startFrames(video) {
    const canvas = document.createElement('canvas');
    canvas.width = FRAME_W;
    canvas.height = FRAME_H;
    const g = canvas.getContext('2d');
    let lastMs = -1;
    frameTimer = setInterval(() => {
      if (!ws || ws.readyState !== WebSocket.OPEN || mediaStart === null || state.stopped || video.readyState < 2) return;
      const timeMs = Math.round((ctx.currentTime - mediaStart) * 10000) / 10;
      if (timeMs <= lastMs + 20) return;
      lastMs = timeMs;
      g.drawImage(video, 0, 0, FRAME_W, FRAME_H);
      const jpeg = canvas.toDataURL('image/jpeg', 0.85).split(',')[1];
      ws.send(JSON.stringify({ type: 'video', time_ms: timeMs, jpeg: jpeg }));
      state.framesSent += 1;
    }, FRAME_MS);
  }

  function setStatus(text) { $('status').textContent = text; }

  function render() {
    $('committed').textContent = state.committed.map((w) => w.text).join(' ');
    $('partial').textContent = state.partial;
  }

  function showSummary(end) {
    const table = $('summary');
    table.innerHTML = '';
    const rows = Object.assign({ words: end.words }, end.summary || {});
    for (const [k, v] of Object.entries(rows)) {
      const tr = table.insertRow();
      tr.insertCell().textContent = k;
      tr.insertCell().textContent = v === null ? '-' : String(v);
    }
  }

  function encode(samples, encoding) {
    if (encoding === 'pcm_f32le') return samples.buffer.slice(0);
    const out = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      out[i] = s < 0 ? s * 32768 : s * 32767;
    }
    return out.buffer;
  }

  function onMessage(event) {
    const msg = JSON.parse(event.data);
    if (msg.type === 'ready') {
      state.ready = msg;
      setStatus('listening (session ' + msg.session_id + ')');
    } else if (msg.type === 'partial') {
      state.partial = msg.text;
    } else if (msg.type === 'commit') {
      state.committed.push(...msg.words);
      state.partial = '';
    } else if (msg.type === 'error') {
      state.errors.push(msg);
      const div = document.createElement('div');
      div.className = 'error';
      div.textContent = msg.code + ': ' + msg.message;
      $('errors').appendChild(div);
    } else if (msg.type === 'lips') {
      state.lips.push(...msg.frames);
      showLips(msg.frames);
    } else if (msg.type === 'end') {
      state.end = msg;
      state.partial = '';
      showSummary(msg);
      setStatus('done: ' + msg.words + ' words');
    }
    render();
  }

  async function start() {
    $('start').disabled = true;
    mediaStart = null;
    const encoding = params.get('encoding') || $('encoding').value;
    const video = params.get('video') === '1' || $('video').checked;
    setStatus(video ? 'opening the microphone and the camera' : 'opening the microphone');
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      video: video ? { width: FRAME_W, height: FRAME_H } : false,
    });
    if (video) {
      $('camera').style.display = 'flex';
      $('preview').srcObject = stream;
    }
    ctx = new AudioContext({ sampleRate: SAMPLE_RATE }); // the browser resamples the microphone
    await ctx.audioWorklet.addModule('pcm-worklet.js');
    const source = ctx.createMediaStreamSource(stream);
    node = new AudioWorkletNode(ctx, 'pcm-capture', {
      processorOptions: { chunkSamples: Math.round((ctx.sampleRate * CHUNK_MS) / 1000) },
    });
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const token = params.get('token');
    ws = new WebSocket(scheme + '://' + location.host + '/v1/stream' + (token ? '?token=' + encodeURIComponent(token) : ''));
    ws.onmessage = onMessage;
    ws.onclose = (e) => {
      state.closeCode = e.code;
      if (!state.end) setStatus('closed (' + e.code + (e.reason ? ': ' + e.reason : '') + ')');
      cleanup();
    };
    ws.onopen = () => {
      const start = { type: 'start', sample_rate: ctx.sampleRate, encoding: encoding, channels: 1 };
      if (video) start.video = true;
      ws.send(JSON.stringify(start));
      if (video) startFrames($('preview'));
      node.port.onmessage = (e) => {
        if (ws.readyState === WebSocket.OPEN && state.ready && !state.stopped) {
          if (mediaStart === null) mediaStart = ctx.currentTime - e.data.length / ctx.sampleRate;
          const data = encode(e.data, encoding);
          state.sentBytes += data.byteLength;
          ws.send(data);
        }
      };
      source.connect(node);
      $('stop').disabled = false;
    };
  }

  function stop() {
    state.stopped = true;
    $('stop').disabled = true;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'stop' }));
    setStatus('finishing');
  }

  function cleanup() {
    if (frameTimer) clearInterval(frameTimer);
    frameTimer = null;
    if (node) node.disconnect();
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (ctx) ctx.close();
    node = stream = ctx = null;
    $('start').disabled = false;
    $('stop').disabled = true;
  }

  $('start').onclick = () => start().catch((e) => { state.errors.push({ code: 'client', message: String(e) }); setStatus('error: ' + e); });
  $('stop').onclick = stop;
  if (params.get('autostart')) {
    start().then(() => {
      const seconds = parseFloat(params.get('seconds') || '0');
      if (seconds > 0) setTimeout(stop, seconds * 1000);
    }).catch((e) => { state.errors.push({ code: 'client', message: String(e) }); setStatus('error: ' + e); });
  }
})();
