"""Run every benchmark and print its figures (``python -m bench``), then every figure next to its goal, and write
the result file (bench/results.py; compare two with ``python -m bench.compare``)."""

from bench import experiment_bench, faults_bench, hop_bench, results, sandbox_bench, scale_bench, traffic_bench

if __name__ == "__main__":
    speed = results.machine_speed_s()
    print(f"machine speed: a fixed Python loop took {speed:.3f} s (a quiet 2-core host: about 0.2 s)\n")
    sandbox_bench.main()
    print()
    faults_bench.main()
    print()
    experiment_bench.main()
    print()
    traffic_bench.main()
    print()
    hop_bench.main()
    print()
    scale_bench.main()
    print()
    print(results.summary())
    speed_after = results.machine_speed_s()
    print(f"machine speed at the end: {speed_after:.3f} s; result file: {results.write(speed, speed_after)}")
