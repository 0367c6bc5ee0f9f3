// Svelte recipe: mount/unmount the Roster component (compiled by build.ts).
import { mount, unmount } from "svelte";
import Roster from "./Roster.svelte";
import { store } from "./shared.ts";

const app = document.getElementById("app")!;
const toggle = Object.assign(document.createElement("button"), {
  id: "toggle",
  textContent: "leave",
});
const type = Object.assign(document.createElement("button"), { id: "type", textContent: "type" });
const holder = document.createElement("div");
app.append(toggle, type, holder);
let roster: ReturnType<typeof mount> | null = mount(Roster, { target: holder });
toggle.onclick = () => {
  if (roster) {
    void unmount(roster);
    roster = null;
  } else roster = mount(Roster, { target: holder });
  toggle.textContent = roster ? "leave" : "join";
};
type.onclick = () => void store.update({ state: { typing: true } });
