// A context goes offline, writes, reloads (the page comes from the service worker, the notes
// from IndexedDB), comes back online, and converges with a context that stayed online.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  addNote,
  noteIds,
  noteTexts,
  openDemo,
  screenshot,
  serverAndBrowser,
  sleep,
  waitForDemo,
  waitForStatus,
} from "./harness.mjs";

const env = serverAndBrowser();
const skip = env.skip;

test("offline writes survive a reload and converge when back online", { skip }, async () => {
  const travellerContext = await env.browser.newContext({ viewport: { width: 1280, height: 800 } });
  const traveller = await openDemo(travellerContext, env.server);
  const office = await openDemo(await env.browser.newContext({ viewport: { width: 1280, height: 800 } }), env.server);
  await waitForStatus(traveller, (s) => s.connected);
  await waitForStatus(office, (s) => s.connected);
  await addNote(office, "agenda for monday");
  await traveller.waitForSelector('[data-testid="note"]:has-text("agenda for monday")');
  // The page must be cached before the network goes away.
  await traveller.evaluate(() => navigator.serviceWorker.ready);

  await travellerContext.setOffline(true);
  await waitForStatus(traveller, (s) => !s.online && !s.connected);
  await addNote(traveller, "written on the train");
  await addNote(traveller, "second offline note");
  await traveller.check('[data-testid="note"]:has-text("agenda for monday") input[type="checkbox"]');
  await waitForStatus(traveller, (s) => s.pendingWrites >= 3);
  // Meanwhile the office writes too.
  await addNote(office, "office note while the traveller is away");
  await sleep(300);
  await traveller.waitForSelector('[data-testid="pending-badge"]');
  await screenshot(traveller, "offline-pending");

  // Reload while offline: the page, the notes and the pending writes are all still there.
  await traveller.reload();
  await waitForDemo(traveller);
  await traveller.waitForSelector('[data-testid="note"]:has-text("second offline note")', { timeout: 10_000 });
  const afterReload = await waitForStatus(traveller, (s) => s.pendingWrites >= 3);
  await traveller.waitForSelector('[data-testid="note"]:has-text("second offline note") [data-testid="pending-badge"]');
  assert.equal(afterReload.online, false);
  assert.ok(!(await noteTexts(traveller)).includes("office note while the traveller is away"));
  await screenshot(traveller, "offline-after-reload");

  await travellerContext.setOffline(false);
  await waitForStatus(traveller, (s) => s.connected && s.pendingWrites === 0, 30_000);
  await traveller.waitForSelector('[data-testid="note"]:has-text("office note while the traveller is away")');
  await office.waitForSelector('[data-testid="note"]:has-text("second offline note")');
  await office.waitForSelector('[data-testid="note"].done:has-text("agenda for monday")');
  const onServer = (await env.server.all("notes")).map((d) => d._id).sort();
  assert.equal(onServer.length, 4);
  assert.deepEqual(await noteIds(traveller), onServer);
  assert.deepEqual(await noteIds(office), onServer);
  await waitForStatus(office, (s) => s.lag === 0);
  await screenshot(traveller, "offline-converged");
});
