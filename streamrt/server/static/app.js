// streamrt browser client: microphone -> AudioWorklet -> 16 kHz PCM over a WebSocket (protocol v1,
// docs/protocol.md) -> live captions. Page parameters: ?token=T (bearer token), ?encoding=pcm_f32le,
// ?autostart=1&seconds=N (start at load, stop after N s; used by the end-to-end tests), ?video=1
// (camera on: a preview, JPEG frames to the server on the audio's media clock, a lip-activity meter
// from its `lips` messages; docs/video.md).
(function () {
  'use strict';
  const SAMPLE_RATE = 16000;
  const CHUNK_MS = 100;
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  // Everything the page received, readable by tests through the DevTools protocol.
  const state = (window.streamrtState = { committed: [], partial: '', ready: null, end: null, errors: [], sentBytes: 0,
    closeCode: null, lips: [], framesSent: 0 });
  let ws = null, ctx = null, stream = null, node = null, stopFrames = null;
  let mediaStart = null; // AudioContext time of the first sample sent: media time 0

  // Frames go out stamped with the audio's media clock: the AudioContext's time since the first
  // audio sample sent (the server lines them up with the audio that way). camera.js sends them.
  function mediaMs() {
    if (!ws || ws.readyState !== WebSocket.OPEN || mediaStart === null || state.stopped) return null;
    return Math.round((ctx.currentTime - mediaStart) * 10000) / 10;
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
      streamrtCamera.showLips(msg.frames);
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
      video: video ? streamrtCamera.constraints : false,
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
      stopFrames = streamrtCamera.sendStart(ws, start, video, mediaMs, () => { state.framesSent += 1; });
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
    if (stopFrames) stopFrames();
    stopFrames = null;
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
