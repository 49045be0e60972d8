"""A Modbus TCP server of pymodbus (Debian's python3-pymodbus, 3.0), serving
the registers a test gives it and changing them on command.

    /usr/bin/python3 modbus_server.py PORT

Reads commands on stdin, one per line:
    ir ADDR VALUE...   set input registers from ADDR
    di ADDR 0|1...     set discrete inputs from ADDR
Prints READY when listening and OK after each command.
"""
import asyncio
import sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartAsyncTcpServer

port = int(sys.argv[1])
store = ModbusSlaveContext(
    di=ModbusSequentialDataBlock(0, [0] * 100),
    co=ModbusSequentialDataBlock(0, [0] * 100),
    hr=ModbusSequentialDataBlock(0, [0] * 100),
    ir=ModbusSequentialDataBlock(0, [0] * 100),
    zero_mode=True,
)
context = ModbusServerContext(slaves=store, single=True)
FC = {"ir": 4, "di": 2, "hr": 3, "co": 1}


async def commands():
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        parts = line.split()
        if len(parts) >= 3 and parts[0] in FC:
            store.setValues(FC[parts[0]], int(parts[1]), [int(v) for v in parts[2:]])
            print("OK", flush=True)


async def main():
    server = asyncio.create_task(StartAsyncTcpServer(context=context, address=("127.0.0.1", port)))
    await asyncio.sleep(0.5)
    print("READY", flush=True)
    await commands()
    server.cancel()


asyncio.run(main())
