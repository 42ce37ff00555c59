export const id = 901;
export const ids = [901];
export const modules = {

/***/ 8901:
/***/ ((__unused_webpack_module, __webpack_exports__, __webpack_require__) => {

/* harmony export */ __webpack_require__.d(__webpack_exports__, {
/* harmony export */   metricsText: () => (/* binding */ metricsText),
/* harmony export */   writeTextfile: () => (/* binding */ writeTextfile)
/* harmony export */ });
/* unused harmony export reasonLabel */
/* harmony import */ var prom_client__WEBPACK_IMPORTED_MODULE_0__ = __webpack_require__(5222);
/* harmony import */ var _common_atomic_js__WEBPACK_IMPORTED_MODULE_1__ = __webpack_require__(4112);
/* harmony import */ var _root_journal_js__WEBPACK_IMPORTED_MODULE_2__ = __webpack_require__(5823);
/* harmony import */ var _root_liveness_js__WEBPACK_IMPORTED_MODULE_3__ = __webpack_require__(4179);
/* harmony import */ var _root_layout_js__WEBPACK_IMPORTED_MODULE_4__ = __webpack_require__(5388);
/* harmony import */ var _root_sizes_js__WEBPACK_IMPORTED_MODULE_5__ = __webpack_require__(7286);
/* harmony import */ var _common_space_js__WEBPACK_IMPORTED_MODULE_6__ = __webpack_require__(3039);
/* harmony import */ var _root_trash_js__WEBPACK_IMPORTED_MODULE_7__ = __webpack_require__(2323);
/* harmony import */ var _warm_warm_js__WEBPACK_IMPORTED_MODULE_8__ = __webpack_require__(4872);
/* harmony import */ var node_fs__WEBPACK_IMPORTED_MODULE_9__ = __webpack_require__(3024);
/* harmony import */ var node_fs__WEBPACK_IMPORTED_MODULE_9___default = /*#__PURE__*/__webpack_require__.n(node_fs__WEBPACK_IMPORTED_MODULE_9__);










/** Why a lane went, as a bounded label: orphan, max-age, keep-free, warm-keep or other. */
function reasonLabel(reason) {
    const text = reason ?? '';
    if (text.startsWith('orphan'))
        return 'orphan';
    if (text.includes('max-age'))
        return 'max-age';
    if (text.includes('keep-free'))
        return 'keep-free';
    if (text.includes('warm-keep'))
        return 'warm-keep';
    return 'other';
}
/**
 * What a fleet operator graphs and alerts on, in Prometheus' text format: lanes (and, with
 * sizes, bytes) by state, the root's free space against the keep-free target, the oldest live
 * lane's age, reaps and evictions by reason, delete failures and resisting trash entries, and
 * the last sweep's time and duration (the last two from the journal).
 */
async function metricsText(root, options) {
    const registry = new prom_client__WEBPACK_IMPORTED_MODULE_0__.Registry();
    const gauge = (name, help, labelNames = []) => new prom_client__WEBPACK_IMPORTED_MODULE_0__.Gauge({ name, help, labelNames, registers: [registry] });
    const lanes = gauge('runlane_lanes', 'Lanes under the root by state.', ['state']);
    const bytes = gauge('runlane_lane_bytes', 'Disk use of the lanes by state: as measured when a lane was kept or parked; with --sizes, every lane and trash entry measured now.', ['state']);
    const layout = new _root_layout_js__WEBPACK_IMPORTED_MODULE_4__/* .Layout */ .PE(root);
    let problems = 0;
    try {
        const counts = new Map(['live', 'orphan', 'kept', 'unknown', 'parked', 'trash'].map((state) => [state, 0]));
        const add = (state, size) => {
            counts.set(state, (counts.get(state) ?? 0) + 1);
            const measured = size();
            if (measured !== undefined)
                bytes.inc({ state }, measured);
        };
        // O(lanes) by default: the size recorded when the lane was kept or parked, else none.
        const sizeOf = (meta, area, names) => () => options.sizes ? layout.sizeOf(area, names).bytes : (0,_root_sizes_js__WEBPACK_IMPORTED_MODULE_5__/* .recordedSize */ .O)(meta)?.bytes;
        const part = (body) => {
            try {
                return body();
            }
            catch {
                problems++;
                return [];
            }
        };
        let oldestLive;
        // One lane at a time: 100,000 lanes are counted without holding their metadata.
        part(() => {
            (0,_root_liveness_js__WEBPACK_IMPORTED_MODULE_3__/* .forEachLane */ .lH)(layout, (lane) => {
                // Live is what the kernel says (the lease is held), whatever the lane's metadata says:
                // a job can write a `retained` marker into its own live lane, not take its lease away.
                const state = lane.leased ? 'live' : lane.state;
                add(state, sizeOf(lane.meta, 'lanes', [lane.key]));
                if (state === 'unknown')
                    problems++;
                const created = Date.parse(lane.created ?? '');
                if (state === 'live' && !Number.isNaN(created))
                    oldestLive = Math.min(oldestLive ?? created, created);
            });
            return [];
        });
        for (const lane of part(() => (0,_warm_warm_js__WEBPACK_IMPORTED_MODULE_8__/* .listParked */ .wv)(layout)))
            add('parked', sizeOf(lane.meta, 'parked', [lane.slot, lane.key]));
        const trash = part(() => (0,_root_trash_js__WEBPACK_IMPORTED_MODULE_7__/* .listTrash */ .hQ)(layout));
        for (const entry of trash)
            add('trash', sizeOf(undefined, 'trash', [entry.name]));
        for (const [state, count] of counts)
            lanes.set({ state }, count);
        if (options.sizes)
            for (const state of counts.keys())
                bytes.inc({ state }, 0);
        gauge('runlane_root_free_bytes', "Bytes free for unprivileged users on the root's file system.").set((0,_common_space_js__WEBPACK_IMPORTED_MODULE_6__/* .freeBytes */ .go)(root));
        const stats = node_fs__WEBPACK_IMPORTED_MODULE_9___default().statfsSync(root);
        gauge('runlane_root_size_bytes', "Size of the root's file system.").set(stats.blocks * stats.bsize);
        if (options.keepFree) {
            gauge('runlane_keep_free_target_bytes', 'Free space the sweep keeps (keep-free).').set((0,_common_space_js__WEBPACK_IMPORTED_MODULE_6__/* .requiredFree */ .Gh)(root, options.keepFree));
        }
        if (oldestLive !== undefined) {
            gauge('runlane_oldest_live_lane_age_seconds', 'Age of the oldest lane whose lease is held.').set((Date.now() - oldestLive) / 1000);
        }
        gauge('runlane_trash_resisting_entries', 'Trash entries that resisted deletion (retried every sweep).').set(trash.filter((entry) => entry.failures.length > 0).length);
        gauge('runlane_problems', 'Parts of the root a listing had to skip (refused directories, unusable locks).').set(problems);
        journalMetrics(registry, (0,_root_journal_js__WEBPACK_IMPORTED_MODULE_2__/* .readJournal */ .a0)(layout));
    }
    finally {
        layout.close();
    }
    return registry.metrics();
}
/** Counters over the journal (they restart when it rotates, which Prometheus' rate() handles). */
function journalMetrics(registry, records) {
    const removals = new prom_client__WEBPACK_IMPORTED_MODULE_0__.Counter({
        name: 'runlane_removals_total',
        help: 'Lanes reaped or evicted, by reason (orphan, max-age, keep-free, warm-keep, other).',
        labelNames: ['action', 'reason'],
        registers: [registry],
    });
    const failures = new prom_client__WEBPACK_IMPORTED_MODULE_0__.Counter({
        name: 'runlane_delete_failures_total',
        help: 'Deletions that left something behind (a root-owned or immutable file, a mount).',
        registers: [registry],
    });
    const freed = new prom_client__WEBPACK_IMPORTED_MODULE_0__.Counter({
        name: 'runlane_deleted_bytes_total',
        help: 'Bytes freed by deleting trash entries.',
        registers: [registry],
    });
    failures.inc(0);
    freed.inc(0);
    let lastSweep;
    // Compared as instants (the reader keeps only ISO-8601 ones, none in the future), not as strings.
    for (const record of records) {
        if (record.action === 'reaped' || record.action === 'evicted')
            removals.inc({ action: record.action, reason: reasonLabel(record.reason) });
        else if (record.action === 'delete-failed')
            failures.inc();
        else if (record.action === 'deleted')
            freed.inc(record.bytes ?? 0);
        else if (record.action === 'swept' && (!lastSweep || Date.parse(record.time) > Date.parse(lastSweep.time)))
            lastSweep = record;
    }
    if (lastSweep) {
        new prom_client__WEBPACK_IMPORTED_MODULE_0__.Gauge({
            name: 'runlane_last_sweep_timestamp_seconds',
            help: 'When the last sweep finished (Unix time).',
            registers: [registry],
        }).set(Date.parse(lastSweep.time) / 1000);
        new prom_client__WEBPACK_IMPORTED_MODULE_0__.Gauge({
            name: 'runlane_last_sweep_duration_seconds',
            help: 'How long the last sweep took.',
            registers: [registry],
        }).set(lastSweep.seconds ?? 0);
    }
}
/** Writes the exposition for node_exporter's textfile collector: atomically, so it never reads half a file. */
function writeTextfile(file, text) {
    (0,_common_atomic_js__WEBPACK_IMPORTED_MODULE_1__/* .writeFileAtomic */ .Zf)(file, text);
}


/***/ })

};
