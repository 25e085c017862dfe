from percep_rag.cli import main

main()
