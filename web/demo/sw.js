// The demo's service worker: keeps the app shell (HTML, scripts, the wasm module) so the page
// also loads while offline, as an offline-first app must; the data itself is in IndexedDB.
// Network first, so a rebuilt demo is picked up whenever the server answers; the cache only
// answers when the network fails. The API (/v1/...) is never cached.
const CACHE = "cstore-demo-shell-v3";

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // shell.json lists every file of the built demo (written by web/scripts/build.sh).
      const files = await (await fetch("shell.json", { cache: "no-store" })).json();
      await cache.addAll(files);
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
      await self.clients.claim();
    })(),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/v1/") || url.pathname === "/metrics") return;
  event.respondWith(
    (async () => {
      try {
        const response = await fetch(request);
        if (response.ok) {
          const cache = await caches.open(CACHE);
          await cache.put(request, response.clone());
        }
        return response;
      } catch (error) {
        // ignoreVary: the server's CORS layer answers `Vary: origin`, and a module script's
        // request carries an Origin header that the precaching request did not.
        const cached = await caches.match(request, { ignoreSearch: true, ignoreVary: true });
        if (cached) return cached;
        throw error;
      }
    })(),
  );
});
