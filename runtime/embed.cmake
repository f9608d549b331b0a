# embed.cmake: writes the file IN as a NUL-terminated C array named NAME into OUT.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT} "/* generated from ${IN} by runtime/embed.cmake */\nconst char ${NAME}[] = {${bytes} 0};\n")
