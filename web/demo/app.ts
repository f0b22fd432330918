import { openReplica } from "cstore";
const db = await openReplica(location.origin);
document.body.textContent = JSON.stringify(db.status);
