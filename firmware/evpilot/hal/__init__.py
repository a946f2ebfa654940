# Hardware abstraction for a board: the QCA7000/QCA7005 modem over SPI (qca7000.py is the sans-I/O driver
# core, qca7000_spi.py its thin machine.SPI/machine.Pin adapter), and the board's other peripherals.
