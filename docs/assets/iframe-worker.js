// The site is meant to be opened from site/index.html, with no server, and Chromium refuses a Web Worker on a page
// opened from file://.  Material's search runs in a worker, so on file:// this runs the worker's script in a hidden
// iframe of the page instead (same origin: the page can reach into it) and bridges the two calls a worker script
// makes: addEventListener("message", ...) and postMessage(data).  Messages sent before the script has loaded wait.
// Named iframe-worker.js so that Material's offline plugin does not add its own copy from a CDN (mkdocs.yml).
(function () {
  "use strict";
  if (location.protocol !== "file:") {
    return;
  }

  class FrameWorker extends EventTarget {
    constructor(url) {
      super();
      this.waiting = [];
      this.frame = document.createElement("iframe");
      this.frame.hidden = true;
      document.documentElement.appendChild(this.frame);
      const scope = this.frame.contentWindow;
      const page = this;
      scope.postMessage = function (data) {
        page.dispatchEvent(new MessageEvent("message", { data: data }));
      };
      scope.importScripts = function () {
        throw new Error("importScripts is not available to a worker of a page opened from file://");
      };
      const script = scope.document.createElement("script");
      script.src = new URL(url, location.href).href;
      script.onload = function () {
        const waiting = page.waiting;
        page.waiting = null;
        waiting.forEach(function (data) { page.postMessage(data); });
      };
      script.onerror = function () {
        page.dispatchEvent(new Event("error"));
      };
      scope.document.head.appendChild(script);
    }

    postMessage(data) {
      if (this.waiting) {
        this.waiting.push(data);
        return;
      }
      const scope = this.frame.contentWindow;
      scope.dispatchEvent(new scope.MessageEvent("message", { data: data }));
    }

    terminate() {
      this.frame.remove();
    }
  }

  window.Worker = FrameWorker;
})();
