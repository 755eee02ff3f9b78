<?php
// The PHP-extension (pecl gearman) driver of the pygearman benchmarks; see benchmarks/README.md.
//
//   php gmbench.php client MODE HOST PORT FUNCTION N SIZE [BATCH]
//       bg_loop | bg_loop_uniq | bg_batch | bg_batch_uniq | rt | taskset | taskset_uniq
//       | many, many_uniq, aio, threads (n/a: exit 3)
//   php gmbench.php worker MODE HOST PORT FUNCTION N        (echo | drain)
//   php gmbench.php version
//
// Prints one JSON line: {"n":..,"ok":..,"elapsed":s,"cpu":s,...}; exits 0 when ok == n,
// 3 with {"na": reason} for a mode the extension has no API for. With GMBENCH_STOP_BEFORE_TIMED=1
// it stops itself (SIGSTOP) just before the timed region, for run.py's strace pass.

function stop_before_timed(): void {
    if (getenv("GMBENCH_STOP_BEFORE_TIMED") === "1") posix_kill(getmypid(), 19 /* SIGSTOP */);
}

function cpu_s(): float {
    $r = getrusage();
    return $r["ru_utime.tv_sec"] + $r["ru_utime.tv_usec"] / 1e6 + $r["ru_stime.tv_sec"] + $r["ru_stime.tv_usec"] / 1e6;
}

function now_s(): float {
    return hrtime(true) / 1e9;
}

function make_payload(int $size): string {
    $s = "";
    for ($i = 0; $i < 26 && $i < $size; $i++) $s .= chr(ord('a') + $i);
    return $size ? substr(str_repeat($s, intdiv($size, 26) + 1), 0, $size) : "";
}

function percentile(array $sorted, float $p): float {
    $n = count($sorted);
    if ($n == 0) return 0.0;
    $i = (int)round($p / 100.0 * ($n - 1));
    return $sorted[min($i, $n - 1)];
}

function emit(array $r): void {
    echo json_encode($r), "\n";
}

if ($argc >= 2 && $argv[1] === "version") {
    emit(["php" => PHP_VERSION, "php_gearman" => phpversion("gearman"), "libgearman" => gearman_version()]);
    exit(0);
}
if ($argc < 7) {
    fwrite(STDERR, "usage: php gmbench.php client|worker MODE HOST PORT FUNCTION N [SIZE [BATCH]]\n");
    exit(2);
}
[$role, $mode, $host, $port, $fn, $n] = [$argv[1], $argv[2], $argv[3], (int)$argv[4], $argv[5], (int)$argv[6]];

if ($role === "client") {
    $size = (int)($argv[7] ?? 64);
    $batch = (int)($argv[8] ?? 1000);
    if ($batch <= 0) $batch = 1000;
    if ($mode === "many" || $mode === "many_uniq") {
        emit(["na" => "no call beyond addTask+runTasks (that is W3-tasks)"]);
        exit(3);
    }
    if ($mode === "aio" || $mode === "threads") {
        emit(["na" => "a Python client mode (asyncio / thread pool)"]);
        exit(3);
    }
    $payload = make_payload($size);
    $c = new GearmanClient();
    $c->addServer($host, $port);   // also negotiates the "exceptions" option (a round trip)
    $own = str_ends_with($mode, "_uniq");
    $pid = getmypid();
    $ok = 0;
    $extra = [];
    stop_before_timed();
    $t0 = now_s(); $c0 = cpu_s();
    switch ($mode) {
    case "bg_loop":
    case "bg_loop_uniq":
        $api = $own ? "GearmanClient::doBackground(unique)" : "GearmanClient::doBackground";
        for ($i = 0; $i < $n; $i++) {
            $h = $own ? $c->doBackground($fn, $payload, "$pid-$i") : $c->doBackground($fn, $payload);
            if ($c->returnCode() != GEARMAN_SUCCESS || !$h) { fwrite(STDERR, "doBackground: " . $c->error() . "\n"); break; }
            $ok++;
        }
        break;
    case "bg_batch":
    case "bg_batch_uniq":
        $api = $own ? "addTaskBackground(unique)+runTasks, batches" : "addTaskBackground+runTasks, batches";
        for ($done = 0; $done < $n; $done += $batch) {
            $m = min($batch, $n - $done);
            for ($i = 0; $i < $m; $i++) {
                $t = $own ? $c->addTaskBackground($fn, $payload, null, "$pid-" . ($done + $i))
                          : $c->addTaskBackground($fn, $payload);
                if ($t === false) { fwrite(STDERR, "addTaskBackground: " . $c->error() . "\n"); break 3; }
            }
            if (!$c->runTasks()) { fwrite(STDERR, "runTasks: " . $c->error() . "\n"); break 2; }
            $ok += $m;
        }
        break;
    case "rt":
        $api = "GearmanClient::doNormal";
        $lat = [];
        for ($i = 0; $i < $n; $i++) {
            $a = hrtime(true);
            $r = $c->doNormal($fn, $payload);
            $lat[] = (hrtime(true) - $a) / 1e3;
            if ($c->returnCode() != GEARMAN_SUCCESS) { fwrite(STDERR, "doNormal: " . $c->error() . "\n"); break; }
            if ($r === $payload) $ok++;
        }
        sort($lat);
        $extra = ["lat_p50_us" => percentile($lat, 50), "lat_p99_us" => percentile($lat, 99)];
        break;
    case "taskset":
    case "taskset_uniq":
        $api = $own ? "addTask(unique)+runTasks, batches" : "addTask+runTasks, batches";
        $bad = 0;
        $c->setCompleteCallback(function (GearmanTask $t) use (&$ok, &$bad, $size) {
            if (strlen($t->data()) === $size) $ok++; else $bad++;
        });
        $c->setFailCallback(function (GearmanTask $t) use (&$bad) { $bad++; });
        $c->setExceptionCallback(function (GearmanTask $t) use (&$bad) { $bad++; });
        for ($done = 0; $done < $n; $done += $batch) {
            $m = min($batch, $n - $done);
            for ($i = 0; $i < $m; $i++) {
                $t = $own ? $c->addTask($fn, $payload, null, "$pid-" . ($done + $i)) : $c->addTask($fn, $payload);
                if ($t === false) { fwrite(STDERR, "addTask: " . $c->error() . "\n"); break 3; }
            }
            if (!$c->runTasks()) { fwrite(STDERR, "runTasks: " . $c->error() . "\n"); break 2; }
        }
        if ($bad) fwrite(STDERR, "$bad tasks failed or returned a wrong size\n");
        break;
    default:
        fwrite(STDERR, "unknown client mode $mode\n");
        exit(2);
    }
    $elapsed = now_s() - $t0; $cpu = cpu_s() - $c0;
    emit(array_merge(["n" => $n, "ok" => $ok, "elapsed" => $elapsed, "cpu" => $cpu, "api" => $api], $extra));
    exit($ok == $n ? 0 : 1);
}

if ($role === "worker") {
    if ($mode !== "echo" && $mode !== "drain") { fwrite(STDERR, "unknown worker mode $mode\n"); exit(2); }
    $drain = $mode === "drain";
    $jobs = 0;
    $w = new GearmanWorker();
    $w->addServer($host, $port);
    $w->addFunction($fn, function (GearmanJob $job) use (&$jobs) {
        $jobs++;
        return $job->workload();
    });
    stop_before_timed();
    $t0 = now_s(); $c0 = cpu_s();
    $errors = 0;
    while (!$drain || $jobs < $n) {
        if (@$w->work() || $w->returnCode() == GEARMAN_SUCCESS) { $errors = 0; continue; }
        fwrite(STDERR, "work: " . $w->error() . "\n");
        if (++$errors > 50) break;
        usleep(100000);
    }
    $elapsed = now_s() - $t0; $cpu = cpu_s() - $c0;
    emit(["n" => $n, "ok" => $jobs, "elapsed" => $elapsed, "cpu" => $cpu, "api" => "GearmanWorker::addFunction+work"]);
    exit($jobs >= $n ? 0 : 1);
}
fwrite(STDERR, "unknown role $role\n");
exit(2);
