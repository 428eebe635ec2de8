import time
def test_t(role_server):
    t=time.monotonic(); a=role_server("agent", env={"TTSTACK_ENGINES": "docker,qemu"}); print("agent start", time.monotonic()-t)
    t=time.monotonic(); c=role_server("controller"); print("ctl start", time.monotonic()-t)
    t=time.monotonic(); c.stop(); print("ctl stop", time.monotonic()-t)
    t=time.monotonic(); a.stop(); print("agent stop", time.monotonic()-t)
    print(c.log()[-3000:])
