// Resumable upload of the imports page's CSV file (tus, see imports/tus.py).
//
// Progressive enhancement: without JavaScript (or without tus support) the form posts
// the file as before. With it, the file goes in 8 MB chunks to /api/v1/uploads/, each
// stored durably before it is acknowledged; pause and resume, a dropped network
// (retried with back-off, and again once the browser is back online), a restarting
// server (retried with back-off, said on the page) and a reloaded
// page (choose the same file again: tus-js-client's fingerprint finds the upload and
// the server's offset says where to go on) all continue where the server left off.
// Once complete, the import is started from the upload and the browser goes to it.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form || !window.tus || !tus.isSupported) return;

  const fileInput = form.querySelector('input[type="file"]');
  const overwrite = form.querySelector('input[name="overwrite_manual"]');
  const submit = form.querySelector('button[type="submit"]');
  const box = document.getElementById("upload-progress");
  const bar = document.getElementById("upload-bar");
  const figures = document.getElementById("upload-figures");
  const live = document.getElementById("upload-live");
  const problem = document.getElementById("upload-error");
  const pauseButton = document.getElementById("upload-pause");
  const resumeButton = document.getElementById("upload-resume");
  const previous = document.getElementById("upload-previous");
  const csrf = form.querySelector('input[name="csrfmiddlewaretoken"]').value;
  const ANNOUNCE_STEP = 10; // percent between two spoken updates

  let upload = null;
  let announced = -1;
  let samples = []; // [time ms, bytes] over the last few seconds, for the speed

  const mb = (bytes) => (bytes / 1e6).toFixed(1) + " MB";
  function duration(seconds) {
    if (!isFinite(seconds)) return "…";
    if (seconds < 60) return Math.ceil(seconds) + " s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + Math.round(seconds % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }
  function say(text) { live.textContent = text; }
  function showError(text) {
    problem.textContent = text;
    problem.hidden = !text;
  }
  // Bytes and percent only: the speed and time left mean nothing while stopped.
  function stopped(why) {
    figures.textContent = figures.textContent.split(" · ").slice(0, 2).join(" · ") + " · " + why;
  }
  function setPaused(paused) {
    pauseButton.hidden = paused;
    resumeButton.hidden = !paused;
    (paused ? resumeButton : pauseButton).focus();
  }
  function detail(err) {
    const response = err && err.originalResponse;
    if (response) {
      try { return JSON.parse(response.getBody()).detail; } catch (e) { /* not JSON */ }
    }
    return "The upload stopped (" + ((err && err.message) || err) + ").";
  }

  function onProgress(sent, total) {
    const now = performance.now();
    samples.push([now, sent]);
    while (samples.length > 2 && now - samples[0][0] > 5000) samples.shift();
    const [t0, b0] = samples[0];
    const speed = now > t0 ? (sent - b0) / ((now - t0) / 1000) : 0; // bytes per second
    const percent = total ? (sent / total) * 100 : 100;
    bar.value = percent;
    bar.textContent = percent.toFixed(0) + "%";
    figures.textContent = mb(sent) + " of " + mb(total) + " · " + percent.toFixed(1) + "% · " +
      (speed > 0 ? (speed / 1e6).toFixed(1) + " MB/s · " + duration((total - sent) / speed) + " left" : "starting…");
    const step = Math.floor(percent / ANNOUNCE_STEP) * ANNOUNCE_STEP;
    if (step > announced) {
      announced = step;
      say("Uploaded " + step + "%.");
    }
  }

  async function startImport() {
    const id = upload.url.replace(/\/$/, "").split("/").pop();
    figures.textContent = "Upload complete. Opening the review…";
    say("Upload complete. Opening the review.");
    const response = await fetch(form.dataset.importEndpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      // Held for review: how the file is read and mapped is checked before it is queued.
      body: JSON.stringify({
        upload: id,
        review: true,
        overwrite_manual: !!(overwrite && overwrite.checked),
      }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      window.location.assign(form.dataset.reviewUrl.replace("/0/", "/" + body.id + "/"));
    } else {
      showError(body.detail || "The upload could not be reviewed (" + response.status + ").");
      say("The upload could not be reviewed.");
      finish();
    }
  }

  function finish() {
    pauseButton.hidden = resumeButton.hidden = true;
    submit.disabled = false;
    upload = null;
  }

  function retryable(err) {
    const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
    // Network errors, server errors, offset conflicts, a busy upload, a rate limit.
    return status === 0 || status >= 500 || [409, 423, 429].includes(status);
  }

  form.addEventListener("submit", async (event) => {
    const file = fileInput.files[0];
    if (!file || upload) return; // let the browser say the field is required
    // Over the limit (the field's own check bypassed): the plain form posts it, and the
    // server stops reading at the limit and says why, on the page.
    if (file.size > +fileInput.dataset.maxBytes) return;
    event.preventDefault();
    showError("");
    announced = -1;
    samples = [];
    submit.disabled = true;
    box.hidden = false;
    upload = new tus.Upload(file, {
      endpoint: form.dataset.tusEndpoint,
      chunkSize: 8 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000, 30000, 60000],
      removeFingerprintOnSuccess: true,
      metadata: { filename: file.name },
      headers: { "X-CSRFToken": csrf },
      onShouldRetry(err) {
        if (!retryable(err) || navigator.onLine === false) return false;
        // Online but no answer (the server restarting, say): it goes on by itself.
        stopped("server not answering, retrying");
        if (!live.textContent.startsWith("The server")) {
          say("The server is not answering. The upload retries by itself.");
        }
        return true;
      },
      onProgress,
      onError(err) {
        if (retryable(err) && navigator.onLine === false) {
          stopped("connection lost, waiting to reconnect");
          say("Connection lost. The upload goes on once you are back online.");
          window.addEventListener("online", () => { if (upload) upload.start(); }, { once: true });
          return;
        }
        showError(detail(err));
        say("Upload failed.");
        finish();
      },
      onSuccess: startImport,
    });
    const earlier = await upload.findPreviousUploads();
    if (earlier.length) {
      upload.resumeFromPreviousUpload(earlier[0]);
      say("Resuming an earlier upload of this file.");
    }
    pauseButton.hidden = false;
    resumeButton.hidden = true;
    upload.start();
  });

  pauseButton.addEventListener("click", () => {
    if (!upload) return;
    upload.abort();
    setPaused(true);
    stopped("paused");
    say("Upload paused at " + Math.floor(bar.value) + "%.");
  });
  resumeButton.addEventListener("click", () => {
    if (!upload) return;
    samples = [];
    setPaused(false);
    say("Upload resumed.");
    upload.start();
  });

  // After a reload: say which uploads can go on (the browser needs the file chosen again).
  tus.defaultOptions.urlStorage.findAllUploads().then((uploads) => {
    const names = uploads.map((u) => (u.metadata && u.metadata.filename) || "a file");
    if (!names.length) return;
    previous.textContent = "Unfinished upload" + (names.length > 1 ? "s" : "") + ": " +
      names.join(", ") + ". Choose the same file again to continue where it stopped.";
    previous.hidden = false;
  }).catch(() => {});
})();
