// Vue recipe: a composable that mirrors the room store into a shallowRef
// while the component is mounted (mount joins, unmount leaves).
import { computed, createApp, defineComponent, h, onUnmounted, ref, shallowRef } from "vue";
import type { RoomSnapshot } from "../../presence.ts";
import { type Meta, type State, stats, store } from "./shared.ts";

/** The composable: a ref of the room's snapshot. */
function useRoom() {
  const snapshot = shallowRef<RoomSnapshot<State, Meta>>(store.getSnapshot());
  const off = store.subscribe((s) => (snapshot.value = s));
  onUnmounted(off);
  return snapshot;
}

const Roster = defineComponent(() => {
  const room = useRoom();
  return () => {
    const { self, others, joined } = room.value;
    const all = self ? [self, ...others] : others;
    return h(
      "ul",
      { id: "roster", "data-joined": String(joined) },
      all.map((m) =>
        h("li", {
          key: m.connectionId,
          "data-cid": m.connectionId,
          "data-user": m.meta.userId,
          "data-typing": String(m.state?.typing === true),
          "data-self": String(m === self),
        }, m.meta.name)
      ),
    );
  };
});

const CountBadge = defineComponent(() => {
  const room = useRoom();
  const count = computed(() => room.value.count); // same object while the numbers hold
  return () => {
    stats.countRenders++;
    return h("b", { id: "count" }, String(count.value.users));
  };
});

const App = defineComponent(() => {
  const shown = ref(true);
  return () => [
    h(
      "button",
      { id: "toggle", onClick: () => (shown.value = !shown.value) },
      shown.value ? "leave" : "join",
    ),
    h("button", { id: "type", onClick: () => store.update({ state: { typing: true } }) }, "type"),
    shown.value ? [h(Roster), h(CountBadge)] : null,
  ];
});

createApp(App).mount("#app");
