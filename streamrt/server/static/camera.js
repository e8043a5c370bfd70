// The camera, shared by the captions page (app.js) and the agent page (agent.js): JPEG frames of the
// preview to the server as `video` messages stamped on the audio's media clock, and the lip-activity
// meter fed by the server's `lips` messages (docs/video.md). The page holds #preview, #lipstate and
// #lipfill.
(function () {
  'use strict';
  const FRAME_MS = 66; // ~15 frames per second to the server
  const FRAME_W = 320, FRAME_H = 240;

  // Every FRAME_MS, a frame of `video` goes to `send` as a `video` message, stamped with `mediaMs()`:
  // the audio's media time now (ms since the first audio sample sent; null: do not send now, before
  // the first sample or after stop). Frames at least 20 ms apart, in time order. Returns `stop()`.
  function startFrames(video, mediaMs, send) {
    const canvas = document.createElement('canvas');
    canvas.width = FRAME_W;
    canvas.height = FRAME_H;
    const g = canvas.getContext('2d');
    let lastMs = -1;
    const timer = setInterval(() => {
      const timeMs = mediaMs();
      if (timeMs === null || video.readyState < 2 || timeMs <= lastMs + 20) return;
      lastMs = timeMs;
      g.drawImage(video, 0, 0, FRAME_W, FRAME_H);
      send({ type: 'video', time_ms: timeMs, jpeg: canvas.toDataURL('image/jpeg', 0.85).split(',')[1] });
    }, FRAME_MS);
    return () => clearInterval(timer);
  }

  // Opens a stream on `ws`: the `start` message (with `video: true` when the camera is on) and, with
  // the camera, the preview's frames over the same socket, `onFrame()` after each. Returns the
  // frames' `stop()`, or null without the camera.
  function sendStart(ws, start, video, mediaMs, onFrame) {
    if (video) start.video = true;
    ws.send(JSON.stringify(start));
    if (!video) return null;
    return startFrames(document.getElementById('preview'), mediaMs, (msg) => {
      ws.send(JSON.stringify(msg));
      onFrame();
    });
  }

  // The newest scored frame of a `lips` message on the meter.
  function showLips(frames) {
    const last = frames[frames.length - 1];
    document.getElementById('lipstate').textContent = last.state + (last.score === null ? '' : ' ' + last.score.toFixed(2));
    const fill = document.getElementById('lipfill');
    fill.style.width = (last.score === null ? 0 : Math.round(last.score * 100)) + '%';
    fill.className = last.state === 'active' ? 'active' : '';
  }

  window.streamrtCamera = { constraints: { width: FRAME_W, height: FRAME_H }, sendStart, showLips };
})();
