// streamrt voice agent page: microphone (echo-cancelled) -> 16 kHz PCM over /v1/dialogue
// (docs/protocol.md, "Dialogue"); the agent's voice (binary pcm_s16le frames) is played as it
// comes, stopped with what is queued dropped at once on `agent_pause` (you spoke over it) and
// `interrupted`, and played again from `agent_resume`'s position; a live transcript of both sides with each answer's
// latency (from the last moment the microphone heard you to the agent's first sound); after an `interrupted`
// with `user_continues` (the agent took over your pause and you went on) your words go on on your turn's line.
// With the camera (the checkbox or ?video=1): a preview, JPEG frames on the audio's media clock
// (camera.js) and a lip-activity meter from the server's `lips` messages (docs/video.md).
// Page parameters: ?token=T, ?autostart=1 (start at load), &turns=N (stop after N agent turns),
// &seconds=S (stop after S s), &video=1; used by the end-to-end tests.
(function () {
  'use strict';
  const SAMPLE_RATE = 16000;
  const CHUNK_MS = 100;
  const VOICE_RMS = 0.02; // a microphone chunk above this counts as the user speaking
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  // Everything the page received, readable by tests through the DevTools protocol.
  const state = (window.streamrtAgent = {
    ready: null, end: null, closeCode: null, errors: [], messages: [], turns: [], user: [], sentBytes: 0,
    lips: [], framesSent: 0,
  });
  let ws = null, ctx = null, stream = null, node = null, stopFrames = null;
  let mediaStart = null; // AudioContext time of the first sample sent: media time 0
  let lastVoice = null; // ctx time of the last loud microphone chunk
  let current = null; // the agent turn being received
  let playhead = 0; // ctx time where the next agent frame starts
  let userLine = null, partialSpan = null;
  let answeredLine = null, answeredPartial = null; // the user's line the agent's current turn answers

  function setStatus(text) { $('status').textContent = text; }

  // the audio's media time now (ms since the first sample sent): the camera's frames are stamped with it
  function mediaMs() {
    if (!ws || ws.readyState !== WebSocket.OPEN || mediaStart === null || state.stopped) return null;
    return Math.round((ctx.currentTime - mediaStart) * 10000) / 10;
  }

  function line(cls, who) {
    const div = document.createElement('div');
    div.className = 'line ' + cls;
    const w = document.createElement('span');
    w.className = 'who';
    w.textContent = who + ':';
    const text = document.createElement('span');
    div.append(w, text);
    $('transcript').appendChild(div);
    return { div, text };
  }

  function userText(committed, partial) {
    if (!userLine) {
      userLine = line('user', 'You');
      partialSpan = document.createElement('span');
      partialSpan.className = 'partial';
      userLine.div.appendChild(partialSpan);
    }
    if (committed) userLine.text.textContent += (userLine.text.textContent ? ' ' : '') + committed;
    partialSpan.textContent = partial ? ' ' + partial : '';
  }

  function playFrame(buf) {
    if (!current || !ctx) return;
    const pcm = new Int16Array(buf);
    const rate = state.ready.output_sample_rate;
    const audio = ctx.createBuffer(1, pcm.length, rate);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = ctx.createBufferSource();
    src.buffer = audio;
    src.connect(ctx.destination);
    const at = Math.max(playhead, ctx.currentTime + 0.02);
    src.start(at);
    playhead = at + audio.duration;
    // a frame's place in the turn: after the previous one, or at agent_resume's position
    current.sources.push({ src, at, offset: current.nextOffset, duration: audio.duration });
    current.nextOffset += audio.duration;
    current.samples += pcm.length;
    if (current.firstAudio === null) {
      current.firstAudio = at;
      current.record.latencyMs = lastVoice === null ? null : Math.round((at - lastVoice) * 1000);
      if (current.record.latencyMs !== null) current.latency.textContent = current.record.latencyMs + ' ms after you stopped';
    }
    current.record.audioMs = Math.round(current.nextOffset * 1000); // as played: frames sent again count once
  }

  // where in the turn the speaker is now (seconds): in the last frame started, or at the end of it
  function position(turn) {
    let pos = null;
    for (const f of turn.sources) {
      if (f.at <= ctx.currentTime) pos = f.offset + Math.min(ctx.currentTime - f.at, f.duration);
    }
    return pos;
  }

  function stopPlaying(turn) {
    turn.sources.forEach((f) => { try { f.src.stop(); } catch (e) { /* not started */ } });
    turn.sources = [];
    playhead = 0;
  }

  function reportPlayback() {
    if (!current || current.paused || !ws || ws.readyState !== WebSocket.OPEN) return;
    const played = position(current);
    if (played === null) return;
    ws.send(JSON.stringify({ type: 'playback', turn: current.turn, position_ms: Math.round(played * 1000) }));
  }

  function onMessage(event) {
    if (typeof event.data !== 'string') { playFrame(event.data); return; }
    const msg = JSON.parse(event.data);
    if (msg.type === 'lips') {
      state.lips.push(...msg.frames);
      streamrtCamera.showLips(msg.frames);
      return;
    }
    state.messages.push(msg);
    if (msg.type === 'ready') {
      state.ready = msg;
      setStatus('listening: speak, then pause (session ' + msg.session_id + ')');
    } else if (msg.type === 'user_partial') {
      userText('', msg.text);
    } else if (msg.type === 'user_commit') {
      state.user.push(msg.text);
      userText(msg.text, '');
    } else if (msg.type === 'agent_turn_start' || msg.type === 'agent_text') {
      // the answer's text may come before its first audio frame
      if (!current || current.turn !== msg.turn) {
        answeredLine = userLine;
        answeredPartial = partialSpan;
        userLine = null;
        const l = line('agent', 'Agent');
        const latency = document.createElement('span');
        latency.className = 'latency';
        l.div.appendChild(latency);
        const record = { turn: msg.turn, text: '', audioMs: 0, latencyMs: null, heard: null, pauses: [] };
        state.turns.push(record);
        current = { turn: msg.turn, line: l, latency, record, sources: [], samples: 0, firstAudio: null,
                    nextOffset: 0, paused: false };
      }
      if (msg.type === 'agent_text') {
        current.record.text += msg.text;
        current.line.text.textContent = current.record.text;
      } else {
        setStatus('the agent is speaking');
      }
    } else if (msg.type === 'agent_turn_end' && current) {
      current.record.text = msg.text;
      current.line.text.textContent = msg.text;
      current.record.done = true;
      current = null;
      setStatus('listening');
      const want = parseInt(params.get('turns') || '0', 10);
      if (want > 0 && state.turns.filter((t) => t.done).length >= want) setTimeout(stop, 500);
    } else if (msg.type === 'agent_pause' && current && current.turn === msg.turn) {
      // you spoke over the agent: stop now, drop what is queued (it comes again if it goes on)
      stopPlaying(current);
      current.paused = true;
      current.record.pauses.push(msg.position_ms);
      setStatus('the agent paused: you spoke');
    } else if (msg.type === 'agent_resume' && current && current.turn === msg.turn) {
      current.paused = false;
      current.nextOffset = msg.position_ms / 1000; // its audio comes again from there
      setStatus('the agent is speaking');
    } else if (msg.type === 'interrupted') {
      const turn = current && current.turn === msg.turn ? current : null;
      if (turn) {
        stopPlaying(turn);
        turn.record.heard = msg.heard_text;
        turn.record.done = true;
        const cut = document.createElement('span');
        cut.className = 'cut';
        cut.textContent = msg.user_continues ? '(withdrawn: you went on)'
          : '(interrupted; you heard: "' + msg.heard_text + '")';
        turn.line.div.appendChild(cut);
      }
      if (msg.user_continues && answeredLine) {
        // the agent had taken over your pause: your words go on in the same turn, on its line
        if (userLine && userLine !== answeredLine) {
          const words = userLine.text.textContent;
          if (words) answeredLine.text.textContent += ' ' + words;
          answeredPartial.textContent = partialSpan.textContent;
          userLine.div.remove();
        }
        userLine = answeredLine;
        partialSpan = answeredPartial;
        $('transcript').appendChild(userLine.div);
      }
      playhead = 0;
      current = null;
    } else if (msg.type === 'error') {
      state.errors.push(msg);
      const div = document.createElement('div');
      div.className = 'error';
      div.textContent = msg.code + ': ' + msg.message;
      $('errors').appendChild(div);
    } else if (msg.type === 'end') {
      state.end = msg;
      setStatus('done');
    }
  }

  function encode(samples) {
    const out = new Int16Array(samples.length);
    let sum = 0;
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      sum += s * s;
      out[i] = s < 0 ? s * 32768 : s * 32767;
    }
    if (Math.sqrt(sum / Math.max(1, samples.length)) > VOICE_RMS) lastVoice = ctx.currentTime;
    return out.buffer;
  }

  async function start() {
    $('start').disabled = true;
    mediaStart = null;
    const video = params.get('video') === '1' || $('video').checked;
    setStatus(video ? 'opening the microphone and the camera' : 'opening the microphone');
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
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
    ws = new WebSocket(scheme + '://' + location.host + '/v1/dialogue' + (token ? '?token=' + encodeURIComponent(token) : ''));
    ws.binaryType = 'arraybuffer';
    ws.onmessage = onMessage;
    ws.onclose = (e) => {
      state.closeCode = e.code;
      if (!state.end) setStatus('closed (' + e.code + (e.reason ? ': ' + e.reason : '') + ')');
      cleanup();
    };
    ws.onopen = () => {
      const start = { type: 'start', sample_rate: ctx.sampleRate, encoding: 'pcm_s16le', channels: 1 };
      stopFrames = streamrtCamera.sendStart(ws, start, video, mediaMs, () => { state.framesSent += 1; });
      node.port.onmessage = (e) => {
        if (ws.readyState === WebSocket.OPEN && state.ready && !state.stopped) {
          if (mediaStart === null) mediaStart = ctx.currentTime - e.data.length / ctx.sampleRate;
          const data = encode(e.data);
          state.sentBytes += data.byteLength;
          ws.send(data);
          reportPlayback();
        }
      };
      source.connect(node);
      $('stop').disabled = false;
    };
  }

  function stop() {
    if (state.stopped) return;
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

  const fail = (e) => { state.errors.push({ code: 'client', message: String(e) }); setStatus('error: ' + e); };
  $('start').onclick = () => start().catch(fail);
  $('stop').onclick = stop;
  if (params.get('autostart')) {
    start().then(() => {
      const seconds = parseFloat(params.get('seconds') || '0');
      if (seconds > 0) setTimeout(stop, seconds * 1000);
    }).catch(fail);
  }
})();
